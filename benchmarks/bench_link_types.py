"""What a queued DVC experiment pays to get the data file, per cache link type.

For each ``cache.type`` it builds a fresh git + DVC repository holding a Galaxy10-layout file
of ``--size-mb`` (zeros: the bytes' values do not matter to a link or a copy), tracked with
``dvc add``; queues a grid of ``--exps`` experiments of a stage that depends on the file and
reads only its labels; runs them with ``dvc queue start -j <exps>``; and prints, per type:

- ``queue s``: wall seconds from ``dvc queue start`` until every experiment succeeded;
- ``extra MB``: the most disk the experiments' temporary copies (``.dvc/tmp/exps``) held in
  data files of their own at any moment (polled every 50 ms): 0 when they are links;
- ``link``: how each copy held the file (``hardlink``, ``symlink``, ``copy``).

``copy`` is DVC's fallback when reflinks are unsupported (its default is ``reflink,copy``);
``reflink,hardlink,symlink`` is what ``.dvc/config`` chooses (docs/scaling.md).

    nice -n 10 .venv/bin/python benchmarks/bench_link_types.py --size-mb 1024 --exps 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from deepgal.data.galaxy10 import write_galaxy10

DATA = "data/galaxy10.h5"
PEEK = """\
import json, sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    json.dump({"n": int(f["ans"].shape[0])}, open("peek.json", "w"))
"""
DVC_YAML = """\
stages:
  peek:
    cmd: python peek.py data/galaxy10.h5
    deps: [peek.py, data/galaxy10.h5]
    params: [p]
    outs: [peek.json]
"""


def sh(cmd: list[str], cwd: Path, env: dict) -> str:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p.stdout


class Watch(threading.Thread):
    """Peak bytes of data files the temporary copies own, and how each copy held the file."""

    def __init__(self, root: Path, cached_ino: int):
        super().__init__(daemon=True)
        self.root, self.ino = root, cached_ino
        self.peak, self.kinds = 0, {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            own = 0
            for f in list(self.root.glob(f"*/{DATA}")) + list(self.root.glob(f"*/*/{DATA}")):
                try:
                    st = f.lstat()
                except FileNotFoundError:
                    continue
                kind = (
                    "symlink" if f.is_symlink() else "hardlink" if st.st_ino == self.ino else "copy"
                )
                own += st.st_blocks * 512 if kind == "copy" else 0
                self.kinds[str(f.parents[1])] = kind
            self.peak = max(self.peak, own)


def measure(cache_type: str, images: np.ndarray, exps: int, work: Path) -> tuple:
    repo = work / cache_type.replace(",", "_")
    repo.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@deepgal.invalid",
        "GIT_COMMITTER_EMAIL": "bench@deepgal.invalid",
    }
    dvc = [sys.executable, "-m", "dvc"]
    sh(["git", "init", "-q"], repo, env)
    sh(dvc + ["init", "-q"], repo, env)
    sh(dvc + ["config", "core.analytics", "false"], repo, env)
    sh(dvc + ["config", "cache.type", cache_type], repo, env)
    write_galaxy10(repo / DATA, images, np.zeros(len(images), np.uint8))
    (repo / "peek.py").write_text(PEEK)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "params.yaml").write_text("p: 0\n")
    sh(dvc + ["add", DATA], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "data"], repo, env)
    cached_ino = (repo / DATA).stat().st_ino if cache_type != "copy" else -1
    grid = ",".join(str(i + 1) for i in range(exps))
    sh(dvc + ["exp", "run", "--queue", "-n", "b", "-S", f"p={grid}"], repo, env)
    watch = Watch(repo / ".dvc/tmp/exps", cached_ino)
    watch.start()
    t0 = time.perf_counter()
    sh(dvc + ["queue", "start", "-j", str(exps)], repo, env)
    while True:
        status = sh(dvc + ["queue", "status"], repo, env)
        states = [ln.split()[-1] for ln in status.splitlines() if " b-" in f" {ln}"]
        if len(states) == exps and all(s in ("Success", "Failed") for s in states):
            break
        time.sleep(0.5)
    seconds = time.perf_counter() - t0
    watch.done.set()
    watch.join()
    if set(states) != {"Success"}:
        sys.exit(f"{cache_type}: experiments failed:\n{status}")
    # Workers exit once the queue is empty; ask them to stop before their repo is deleted.
    subprocess.run(dvc + ["queue", "stop"], cwd=repo, env=env, capture_output=True)
    return seconds, watch.peak / 2**20, sorted(set(watch.kinds.values()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--exps", type=int, default=2)
    p.add_argument("--types", nargs="+", default=["copy", "reflink,hardlink,symlink", "symlink"])
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the repositories go (same file system as a real repo)",
    )
    args = p.parse_args()
    n = args.size_mb * 2**20 // (256 * 256 * 3)
    images = np.zeros((n, 256, 256, 3), np.uint8)
    print(
        f"data file: {n} images of 256x256x3 = {images.nbytes / 2**20:.0f} MB; "
        f"{args.exps} queued experiments, dvc queue start -j {args.exps}"
    )
    print(f"{'cache.type':28s} {'queue s':>8s} {'extra MB':>9s}  link")
    work = Path(tempfile.mkdtemp(prefix="bench_links_", dir=args.workdir))
    try:
        for t in args.types:
            seconds, extra_mb, kinds = measure(t, images, args.exps, work)
            print(f"{t:28s} {seconds:8.1f} {extra_mb:9.0f}  {'/'.join(kinds) or '-'}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
