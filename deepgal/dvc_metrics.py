"""The numbers `dvc exp show` shows: one small metrics.json with a row per variant.

DVC prefixes each metric column with its file name when there are several metric files
(``results/convnext_tiny/metrics.json:test.accuracy``), which no terminal can fit for five
variants; with one file the columns are just ``convnext_tiny.test_acc``. So each evaluate
stage keeps its own ``metrics.json`` and the plot stage gathers them here.
"""

from __future__ import annotations

from collections.abc import Mapping

DIGITS = 4  # enough to rank variants; short enough to keep `dvc exp show` narrow


def variant_row(metrics: Mapping) -> dict:
    """One variant's evaluate ``metrics.json`` -> ``{test_acc, test_f1, val_acc, val_f1, epoch,
    train_min}`` (test keys absent when there is no test split)."""
    out = {}
    for split in ("test", "val"):
        if split in metrics:
            out[f"{split}_acc"] = round(float(metrics[split]["accuracy"]), DIGITS)
            out[f"{split}_f1"] = round(float(metrics[split]["macro_f1"]), DIGITS)
    out["epoch"] = int(metrics["epoch"])
    out["train_min"] = round(float(metrics["train_min"]), 2)
    return out


def metrics_table(per_variant: Mapping[str, Mapping]) -> dict:
    """``{variant: variant_row(...)}`` in the order the variants are given: metrics.json."""
    return {v: variant_row(m) for v, m in per_variant.items()}
