"""k-fold cross-validation folds for small labelled sets: stratified, seeded, groups kept whole.

scikit-learn's ``StratifiedGroupKFold`` (shuffled with the seed) deals whole groups (e.g.
:func:`deepgal.data.split.identical_groups`) to folds so each fold's class mix follows the
whole set's; a group never straddles two folds.
"""

from __future__ import annotations

import numpy as np

from .labelled import check_folds


def cv_folds(
    labels: np.ndarray,
    folds: int,
    seed: int,
    groups: np.ndarray | None = None,
    path: str = "the labelled set",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` pairs (train indices, held-out indices), each sorted int64; the held-out
    parts are disjoint and cover every row once. labels: (N,) int; groups: (N,) int or None
    (one row per group). Raises :class:`~deepgal.data.labelled.LabelledError` when a class has
    fewer distinct galaxies than ``folds``; ``folds`` must be >= 2."""
    from sklearn.model_selection import StratifiedGroupKFold

    if folds < 2:
        raise ValueError(f"cv folds must be >= 2, got {folds}")
    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    check_folds(labels, folds, path, groups)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [
        (np.sort(tr).astype(np.int64), np.sort(te).astype(np.int64))
        for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)
    ]
