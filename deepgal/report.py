"""``report.md``: the results table of all variants, the best variant's most confused class
pairs, and links to the pictures.

A row is a plain dict (build it with :func:`report_row` from a variant's evaluation, selection
and train metrics):

- ``variant`` str, ``val_accuracy`` float, ``val_macro_f1`` float, ``epoch`` int (selected),
  ``train_seconds`` float;
- ``test_accuracy``, ``test_macro_f1`` float or None (no test split when its fraction is 0).
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

import numpy as np

from deepgal.data.galaxy10 import CLASS_NAMES
from deepgal.utils import atomic_write_text

REQUIRED_KEYS = ("variant", "val_accuracy", "val_macro_f1", "epoch", "train_seconds")
OPTIONAL_KEYS = ("test_accuracy", "test_macro_f1")


def report_row(variant: str, evaluation: Mapping, selection: Mapping,
               train_metrics: Mapping) -> dict:
    """One table row from the evaluate, select and train outputs of ``variant``."""
    test = evaluation.get("test") or {}
    return {
        "variant": variant,
        "val_accuracy": float(evaluation["val"]["accuracy"]),
        "val_macro_f1": float(evaluation["val"]["macro_f1"]),
        "test_accuracy": float(test["accuracy"]) if "accuracy" in test else None,
        "test_macro_f1": float(test["macro_f1"]) if "macro_f1" in test else None,
        "epoch": int(selection["epoch"]),
        "train_seconds": float(train_metrics["train_seconds"]),
    }


def sort_rows(rows: Sequence[Mapping]) -> list[dict]:
    """Rows by validation accuracy, best first; ties by val macro-F1, then variant name."""
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise ValueError(f"report row {i} ({row.get('variant', '?')}) lacks {missing}; "
                             f"a row needs {list(REQUIRED_KEYS)}")
    return sorted((dict(r) for r in rows),
                  key=lambda r: (-r["val_accuracy"], -r["val_macro_f1"], r["variant"]))


def most_confused(cm: np.ndarray, class_names: Sequence[str] = CLASS_NAMES,
                  k: int = 5) -> list[dict]:
    """The ``k`` largest off-diagonal cells of ``cm`` (K, K) ints (rows true, columns predicted).

    Returns ``[{"true": name, "predicted": name, "count": int, "share": float}, ...]`` with
    ``share`` = count / images of the true class; ordered by count, then share, then class
    order. Cells with zero count are never listed, so fewer than ``k`` may come back.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = len(class_names)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix has shape {cm.shape}; expected ({n}, {n})")
    support = cm.sum(axis=1)
    cells = [(int(cm[i, j]), cm[i, j] / support[i], i, j)
             for i in range(n) for j in range(n) if i != j and cm[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
    return [{"true": class_names[i], "predicted": class_names[j], "count": count,
             "share": float(share)} for count, share, i, j in cells[:k]]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _f1(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _results_table(rows: list[dict]) -> list[str]:
    lines = ["| # | variant | val accuracy | test accuracy | val macro-F1 | test macro-F1 "
             "| selected epoch | training time (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for rank, r in enumerate(rows, start=1):
        name = f"**{r['variant']}** (best)" if rank == 1 else r["variant"]
        lines.append(f"| {rank} | {name} | {_pct(r['val_accuracy'])} "
                     f"| {_pct(r.get('test_accuracy'))} | {_f1(r['val_macro_f1'])} "
                     f"| {_f1(r.get('test_macro_f1'))} | {r['epoch']} "
                     f"| {r['train_seconds']:,.1f} |")
    return lines


def _confused_section(best: str, cm: np.ndarray | None, class_names: Sequence[str],
                      split: str, k: int) -> list[str]:
    lines = [f"## Most confused class pairs ({best}, {split})", ""]
    if cm is None:
        return lines + [f"No confusion matrix was given for {best}."]
    pairs = most_confused(cm, class_names, k)
    if not pairs:
        return lines + ["No misclassifications."]
    lines += ["| true class | predicted as | count | share of true class |",
              "|---|---|---:|---:|"]
    lines += [f"| {p['true']} | {p['predicted']} | {p['count']} | {100 * p['share']:.1f}% |"
              for p in pairs]
    return lines


def _picture_lines(pictures: Mapping[str, str]) -> list[str]:
    lines = ["## Pictures", ""]
    for caption, rel in pictures.items():
        rel_path = PurePosixPath(Path(rel).as_posix())
        if rel_path.is_absolute():
            raise ValueError(f"picture '{caption}' has absolute path {rel}; give it relative "
                             "to report.md so the report works wherever it is copied")
        target = f"<{rel_path}>" if " " in str(rel_path) else str(rel_path)
        lines += [f"### {caption}", "", f"![{caption}]({target})", ""]
    return lines


def render_report(rows: Sequence[Mapping], confusions: Mapping[str, np.ndarray],
                  pictures: Mapping[str, str], class_names: Sequence[str] = CLASS_NAMES,
                  confusion_split: str = "val", k: int = 5) -> str:
    """The markdown text of the report (see :func:`write_report`)."""
    if not rows:
        raise ValueError("no result rows to report; expected one row per variant")
    ordered = sort_rows(rows)
    best = ordered[0]["variant"]
    lines = ["# deepgal results", "",
             "Variants sorted by validation accuracy; the best is marked. Test columns read "
             "\"–\" when there is no test split.", ""]
    lines += _results_table(ordered) + [""]
    lines += _confused_section(best, confusions.get(best), class_names, confusion_split, k)
    lines += [""] + _picture_lines(pictures)
    return "\n".join(lines).rstrip() + "\n"


def write_report(path: str | Path, rows: Sequence[Mapping],
                 confusions: Mapping[str, np.ndarray], pictures: Mapping[str, str],
                 class_names: Sequence[str] = CLASS_NAMES, confusion_split: str = "val",
                 k: int = 5) -> str:
    """Write ``report.md`` at ``path`` atomically (parent dirs created) and return its text.

    ``rows``: one dict per variant (module docstring); ``confusions``: variant -> (K, K) int
    confusion matrix on ``confusion_split``; ``pictures``: caption -> path relative to the
    report, shown in that order.
    """
    text = render_report(rows, confusions, pictures, class_names, confusion_split, k)
    atomic_write_text(path, text)
    return text
