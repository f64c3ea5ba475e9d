"""The data a run trained on, as MLflow dataset inputs (the run list's "Datasets" column).

One dataset per split (``<source>/train``, ``/val``, ``/test``), each an input of the run with
MLflow's context tag set to the split. The digest is the data file's SHA-256 (cut to the 12
characters MLflow shows; the store's column holds 36), the full checksum and the split's size
are in the profile, and the schema says what a row is: one (H, W, 3) uint8 image and its label.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..handoff import Source

DIGEST_CHARS = 12


def dataset_inputs(source: Source | Mapping, split_sizes: dict[str, int]) -> list:
    """``source``: the download stage's ``source.json`` (a :class:`deepgal.handoff.Source`, or
    its keys: ``source``, ``sha256``, optional ``url``, ``path``, ``image_size`` [H, W],
    ``n_images``); ``split_sizes``: {split: rows}. Returns MLflow ``DatasetInput`` entities;
    empty splits are left out."""
    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.types import Schema, TensorSpec
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    source = Source.coerce(source, "source.json")
    sha = source.sha256.lower()
    h, w = (list(source.image_size or [-1, -1]) + [-1, -1])[:2]
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(np.uint8), (-1, h, w, 3), "images")]),
        targets=Schema([TensorSpec(np.dtype(np.int64), (-1,), "ans")]),
    )
    if source.url:
        kind, where = "http", {"url": source.url}
    else:
        kind, where = "local", {"uri": source.path or "data/galaxy10.h5"}
    inputs = []
    for split, rows in split_sizes.items():
        if not rows:
            continue
        profile = {
            "num_rows": int(rows),
            "split": split,
            "sha256": sha,
            "file_images": source.n_images,
        }
        ds = Dataset(
            name=f"{source.source}/{split}",
            digest=sha[:DIGEST_CHARS],
            source_type=kind,
            source=json.dumps(where),
            schema=json.dumps(schema.to_dict()),
            profile=json.dumps(profile),
        )
        inputs.append(DatasetInput(ds, tags=[InputTag(MLFLOW_DATASET_CONTEXT, split)]))
    return inputs
