"""Images from two earlier versions of the renderer, taken from git: a real-free test of transfer.

A model trained on today's synthetic galaxies and scored on another renderer's galaxies meets
a shift of style (profiles, colours, noise, stretch, class definitions) that no real pixel
decided. Two earlier image models of this project serve, rendered from git history:

* ``b288cc5`` -- rebuilt from published facts (GZ DECaLS cut-out scaling, per-band seeing and
  depths, the ``dstn_rgb`` colour map, JPEG), every nuisance drawn wider than the real range
  (docs/renderer.md);
* ``1e484f6`` -- the first procedural renderer, from before b214773 tuned the renderer
  against the real images' statistics (today's renderer descends from it, so it is not
  independent of today's).

Neither was tuned on the scores this is used to judge. It writes ``<out>/<commit>.npz``
(``images`` (N, S, S, 3) uint8, ``labels`` (N,)); ``sim_to_real.py --extra-val`` scores them:

    python benchmarks/foreign_renderers.py --out /tmp/foreign
    python benchmarks/sim_to_real.py --synthetic-only --extra-val /tmp/foreign/*.npz
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITS = ("b288cc5", "1e484f6")
# Written under a temporary name and renamed, so an interrupted render leaves no half file.
RENDER = (
    "import os, sys, numpy as np; from deepgal.data.synthetic import render; "
    "x, y = render(int(sys.argv[1]), int(sys.argv[2]), seed=int(sys.argv[3])); "
    "tmp = sys.argv[4] + '.part.npz'; np.savez(tmp, images=x, labels=y); "
    "os.replace(tmp, sys.argv[4])"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=777)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for commit in COMMITS:
        with tempfile.TemporaryDirectory(prefix=f"deepgal-{commit}-") as tmp:
            # Only the old package is needed: export it, so the checkout stays untouched.
            got = subprocess.run(
                ["git", "-C", str(ROOT), "archive", commit, "deepgal"], capture_output=True
            )
            if got.returncode:
                raise SystemExit(
                    f"git archive {commit} failed in {ROOT}: "
                    f"{got.stderr.decode().strip()}\nThe renderer of {commit} comes "
                    "from this clone's history; in a shallow clone run `git fetch "
                    "--unshallow` first."
                )
            tree = got.stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=tree, check=True)
            dest = args.out / f"{commit}.npz"
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    RENDER,
                    str(args.per_class),
                    str(args.image_size),
                    str(args.seed),
                    str(dest),
                ],
                cwd=tmp,
                env={**os.environ, "PYTHONPATH": tmp},
                check=True,
            )
            print(
                f"{dest}: {args.per_class} per class at {args.image_size} px, "
                f"seed {args.seed}, renderer of {commit}"
            )


if __name__ == "__main__":
    main()
