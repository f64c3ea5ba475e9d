"""The report's Grad-CAM gallery: drawn from the maps the evaluate stage stored
(:class:`deepgal.handoff.GradCams`), with no model and no torch here."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..data.galaxy10 import CLASS_NAMES
from ..handoff import GradCams
from .gallery import Cell, plot_gallery

log = logging.getLogger("plot")
MISSED = "tab:red"  # frame of a misclassified image, as in the oddities gallery


def plot_gradcams(
    cams: GradCams, variant: str, path: str | Path, class_names: Sequence[str] = CLASS_NAMES
) -> Figure:
    """Each image of ``cams`` as the model saw it, then the same with the map of its predicted
    class over it (red frames: the mistakes); four images a row. Writes the PNG at ``path``."""
    if cams.skipped:
        raise ValueError(f"no Grad-CAM maps to draw for {variant}: {cams.skipped}")
    cells = []
    for i, row in enumerate(cams.rows.tolist()):
        true, pred = class_names[cams.label[i]], class_names[cams.pred[i]]
        wrong = cams.kind[i] == "confused"
        frame = MISSED if wrong else None
        # two lines: a long class name after the row number would overrun the thumbnail
        cells.append(Cell(cams.views[i], f"#{row}\n{'true ' if wrong else ''}{true}", frame=frame))
        cells.append(
            Cell(
                cams.views[i],
                f"map of {pred}\np={cams.confidence[i]:.2f}",
                heat=cams.maps[i],
                frame=frame,
            )
        )
    title = (
        f"{variant}: where the evidence for the predicted class lies (Grad-CAM at "
        f"{cams.layer}, {cams.split} images): each class's surest correct images, then the "
        "surest mistakes of the most confused pairs (red frame)"
    )
    return plot_gallery(cells, title, path, max_cols=8, pairs=True)


def gradcam_section(variant: str, cams: GradCams, picture: str | None) -> list[str]:
    """Markdown lines: the gallery at ``picture`` (relative to the report) with how to read
    it, or why there is none (``picture`` None: ``cams.skipped`` says why)."""
    lines = [f"## What {variant} looked at (Grad-CAM)", ""]
    if picture is None:
        return lines + [f"No Grad-CAM gallery: {cams.skipped}.", ""]
    n_wrong = int((cams.kind == "confused").sum())
    lines += [
        f"Per class the {cams.split} images {variant} classified correctly with the highest "
        f"probability, then its {n_wrong} surest mistakes from the most confused class pairs "
        "(red frames). Each image appears twice: as the model saw it (after its crop and "
        "resize), then with the Grad-CAM map of the class it predicted over it, red where "
        f"the evidence for that class lies (layer `{cams.layer}`; each map scaled to its own "
        "maximum). A map on the galaxy's bulge, bar or arms is the model reading morphology; "
        "a map on the sky, a foreground star or the frame's edge is a shortcut. "
        "`deepgal explain` draws the same maps for any rows.",
        "",
        f"![{variant}: Grad-CAM gallery]({picture})",
        "",
    ]
    return lines


def gradcam_report(variant: str, cams: GradCams, plots: Path) -> list[str]:
    """Draw ``variant``'s gallery into ``plots/<variant>_gradcam.png`` (nothing when the
    evaluate stage skipped it); the report's lines on it, the picture relative to ``plots``'
    parent (where report.md is)."""
    if cams.skipped:
        log.warning("%s: no Grad-CAM gallery: %s", variant, cams.skipped)
        return gradcam_section(variant, cams, None)
    png = Path(plots) / f"{variant}_gradcam.png"
    plot_gradcams(cams, variant, png)
    return gradcam_section(variant, cams, f"{png.parent.name}/{png.name}")
