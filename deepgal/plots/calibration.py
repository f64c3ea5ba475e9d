"""The reliability diagram of every variant in one figure, and the report's calibration table:
from each variant's ``results/<variant>/calibration.json`` (the evaluate stage's
:func:`deepgal.calibration.measure`), on the test split when there is one, else val (where the
temperature was fitted, so its "after" flatters)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import new_figure, save_png


def shown_split(calib: Mapping) -> str:
    """The split a variant's calibration is shown on: test when present, else val."""
    return "test" if "test" in calib else "val"


def plot_reliability(per_variant: Mapping[str, Mapping], png: str | Path) -> Path:
    """One panel per variant: accuracy against mean confidence per non-empty bin, before
    (grey) and after (blue) the temperature, the diagonal of perfect calibration."""
    n = max(len(per_variant), 1)
    fig = new_figure(3.0 * n, 3.2)
    for i, (v, calib) in enumerate(per_variant.items()):
        ax = fig.add_subplot(1, n, i + 1)
        split = shown_split(calib)
        m = calib[split]
        ax.plot([0, 1], [0, 1], ls=":", color="black", lw=0.8)
        for when, color in (("before", "#999999"), ("after", "#1f77b4")):
            rel = m[f"reliability_{when}"]
            keep = np.asarray(rel["count"]) > 0
            ax.plot(
                np.asarray(rel["confidence"])[keep],
                np.asarray(rel["accuracy"])[keep],
                "o-",
                color=color,
                ms=3,
                label=f"{when}: ECE {m[f'ece_{when}']:.3f}, NLL {m[f'nll_{when}']:.2f}",
            )
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence",
            title=f"{v} ({split}, T = {calib['temperature']:.2f})",
        )
        if i == 0:
            ax.set_ylabel("accuracy")
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return save_png(fig, png)


def calibration_table(per_variant: Mapping[str, Mapping]) -> list[str]:
    """Markdown lines: per variant, split shown, temperature, ECE and NLL before -> after."""
    lines = [
        "## Calibration",
        "",
        "Temperature fitted on the validation split (select stage); ECE with 15 bins. "
        "Every probability deepgal writes is the calibrated one.",
        "",
        "| variant | split | temperature | ECE before | ECE after | NLL before | NLL after |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, calib in per_variant.items():
        s = shown_split(calib)
        m = calib[s]
        lines.append(
            f"| {v} | {s} | {calib['temperature']:.3f} | {m['ece_before']:.3f} | "
            f"{m['ece_after']:.3f} | {m['nll_before']:.3f} | {m['nll_after']:.3f} |"
        )
    return lines + [""]
