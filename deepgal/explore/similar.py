"""What ``deepgal similar`` runs: look-alikes of one galaxy, or the most unusual galaxies of a
file, each as a PNG gallery and a CSV.

Every check of the input (file, query row or image, k, checkpoint) runs before the file is
embedded, and each output is written whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..inference.cutouts import CutoutError, Cutouts, load_cutout
from ..plots.gallery import Cell, plot_gallery
from ..utils import atomic_write_text
from .embed import Model, file_embedding, image_embedding, row_images
from .index import NeighbourIndex
from .outliers import DEFAULT_K, knn_outlier_scores

QUERY_COLOUR = "#d62728"
# A folder's cut-outs are drawn at this side (thumbnails ~300 px wide), not at the model's
# input size (32 px for the CPU defaults), which is too coarse to see a galaxy in.
DISPLAY_SIDE = 256


@dataclass(frozen=True)
class Source:
    """A file to explore with a checkpoint: ``cut`` (from open_cutouts), the lazily loaded
    ``model``, where embeddings are cached, and how they are computed."""

    model: Model
    cut: Cutouts
    cache_dir: Path
    batch_size: int = 256
    tta: bool = False

    def embedding(self) -> np.ndarray:
        return file_embedding(self.model, self.cut, self.cache_dir, self.batch_size, self.tta)

    def name_column(self) -> str:
        return "file" if self.cut.kind == "folder" else "index"

    def display(self, name: str, width: int = 18) -> str:
        """A row's name for a caption: ``#12`` for an HDF5 row, a file name cut to ``width``."""
        if self.cut.kind != "folder":
            return f"#{name}"
        return name if len(name) <= width else name[: width - 1] + "…"

    def label_name(self, row: int) -> str | None:
        if self.cut.labels is None:
            return None
        label = int(self.cut.labels[row])
        names = self.model.class_names
        return names[label] if 0 <= label < len(names) else str(label)


def parse_query(text: str, cut: Cutouts) -> int | Path:
    """``text`` as a row number of ``cut`` (an integer) or as an image file (anything else)."""
    n = len(cut.names)
    try:
        row = int(text)
    except ValueError:
        path = Path(text)
        if not path.is_file():
            raise CutoutError(
                f"--query {text}: neither a row number of {cut.path} nor an existing JPEG/PNG file"
            ) from None
        return path
    if not 0 <= row < n:
        raise CutoutError(f"--query {row}: {cut.path} has {n} images, rows 0 to {n - 1}")
    return row


def similar(
    src: Source, query: int | Path, k: int, out: Path, backend: str = "auto"
) -> pd.DataFrame:
    """The ``k`` nearest images of ``src`` to ``query`` (a row of it, left out of its own
    neighbours, or an image file) by cosine distance of embeddings. Writes ``out/similar.csv``
    (rank 0 = the query, then nearest first: name, distance, label) and ``out/similar.png``."""
    n_others = len(src.cut.names) - (1 if isinstance(query, int) else 0)
    if not 1 <= k <= n_others:
        raise CutoutError(
            f"-k {k}: {src.cut.path} has {n_others} images to search "
            f"{'besides the query ' if isinstance(query, int) else ''}"
            f"(give 1 <= k <= {n_others})"
        )
    _ = src.model.model  # a bad checkpoint fails here, before a long embedding
    if isinstance(query, Path):
        _, query_vec = image_embedding(src.model, query, src.tta)
        vectors = src.embedding()
    else:
        vectors = src.embedding()
        query_vec = vectors[query]
        query_image = row_images(src.model, src.cut, [query], DISPLAY_SIDE)[0]
    index = NeighbourIndex(vectors, backend)
    extra = 1 if isinstance(query, int) else 0  # the row itself comes back as a neighbour
    dist, idx = index.search(query_vec[None], k + extra)
    keep = idx[0] != query if extra else np.ones(k, bool)
    rows, dist = idx[0][keep][:k], dist[0][keep][:k]
    col = src.name_column()
    qname = str(query) if isinstance(query, Path) else src.cut.names[query]
    df = pd.DataFrame(
        {
            "rank": np.arange(k + 1),
            col: [qname, *(src.cut.names[r] for r in rows)],
            "distance": np.r_[0.0, dist],
        }
    )
    labelled = [None if isinstance(query, Path) else query, *rows]
    _add_labels(df, src, labelled)
    images = row_images(src.model, src.cut, rows, DISPLAY_SIDE)
    if isinstance(query, Path):  # shown at the file's own size, not squeezed to the input's
        query_image = load_cutout(query, images.shape[1])
    what = query.name if isinstance(query, Path) else src.display(qname)
    cells = [
        Cell(query_image, f"query: {what}" + _label_line(src, labelled[0]), frame=QUERY_COLOUR)
    ]
    cells += [
        Cell(img, f"{src.display(name)}  d={d:.3f}" + _label_line(src, r))
        for img, name, d, r in zip(images, df[col][1:], dist, rows, strict=True)
    ]
    _write(
        out,
        "similar",
        df,
        cells,
        f"The {k} nearest galaxies to {what} in "
        f"{src.model.path.name}'s embedding (cosine distance d)",
    )
    return df


def outliers(
    src: Source, n: int, out: Path, k: int = DEFAULT_K, backend: str = "auto"
) -> pd.DataFrame:
    """The ``n`` most unusual images of ``src`` by :func:`knn_outlier_scores` (the file
    against itself, ``k`` neighbours, at most N - 1). Writes ``out/outliers.csv`` (rank, name,
    score, label; most unusual first) and ``out/outliers.png``."""
    total = len(src.cut.names)
    if total < 2:
        raise CutoutError(f"{src.cut.path}: one image only; outliers need at least two")
    if not 1 <= n <= total:
        raise CutoutError(
            f"--outliers {n}: {src.cut.path} has {total} images (give 1 <= N <= {total})"
        )
    _ = src.model.model  # a bad checkpoint fails here, before a long embedding
    k = min(k, total - 1)
    scores = knn_outlier_scores(src.embedding(), None, k, backend)
    rows = np.argsort(-scores, kind="stable")[:n]
    col = src.name_column()
    df = pd.DataFrame(
        {"rank": np.arange(1, n + 1), col: [src.cut.names[r] for r in rows], "score": scores[rows]}
    )
    _add_labels(df, src, list(rows))
    images = row_images(src.model, src.cut, rows, DISPLAY_SIDE)
    cells = [
        Cell(img, f"{src.display(name)}  s={s:.3f}" + _label_line(src, r))
        for img, name, s, r in zip(images, df[col], scores[rows], rows, strict=True)
    ]
    _write(
        out,
        "outliers",
        df,
        cells,
        f"The {n} most unusual of {total} galaxies: score s = "
        f"mean cosine distance to the {k} nearest others in {src.model.path.name}'s embedding",
    )
    return df


def _add_labels(df: pd.DataFrame, src: Source, rows: list) -> None:
    if src.cut.labels is not None:
        df["label"] = pd.array(
            [None if r is None else int(src.cut.labels[r]) for r in rows], dtype="Int64"
        )
        df["label_name"] = [None if r is None else src.label_name(r) for r in rows]


def _label_line(src: Source, row) -> str:
    name = None if row is None else src.label_name(int(row))
    return f"\n{name}" if name else ""


def _write(out: Path, stem: str, df: pd.DataFrame, cells: list[Cell], title: str) -> None:
    out = Path(out)
    atomic_write_text(out / f"{stem}.csv", df.to_csv(index=False, float_format="%.6f"))
    plot_gallery(cells, title, out / f"{stem}.png")
