"""Stage reduce@<variant>: UMAP, t-SNE and PCA maps fitted on train, with val and test placed on them."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

# Set before sklearn/numba load their runtimes. OpenMP threads that spin while waiting made
# t-SNE 6x slower on a busy 2-core machine (BENCHMARKS.md). Numba's compiled UMAP kernels are
# cached on disk in the project (the first reduce compiles them, later ones load them).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "numba")
)

from deepgal import config, stage  # noqa: E402
from deepgal.handoff import Embeddings, Features  # noqa: E402
from deepgal.reduce import reduce_features  # noqa: E402
from deepgal.utils import write_json  # noqa: E402

log = logging.getLogger("reduce")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--features", type=Path, required=True, help="models/<variant>/features.h5")
    p.add_argument("--out", type=Path, required=True, help="results/<variant>/embeddings.csv")
    p.add_argument("--timings", type=Path, required=True, help="seconds per method and split")
    args = p.parse_args()
    base, cfg = config.load_section("base"), config.load_section("reduce")

    with Features.open(args.features) as feats:  # the (N, D) matrix is read as needed
        df, timings = reduce_features(
            feats, cfg.methods, base.seed, cfg.pca_dims, cfg.exact_max, cfg.fit_max
        )
    Embeddings(df).write(args.out)
    write_json(args.timings, timings)
    for method, per_split in timings.items():
        log.info("%s: %s", method, ", ".join(f"{s} {t:.1f}s" for s, t in per_split.items()))
    return 0


if __name__ == "__main__":
    stage.run(main)
