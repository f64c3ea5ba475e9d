"""Start-up cost of each stage script: the seconds a stage process spends before it works.

    python benchmarks/bench_startup.py [--repeat 3]

Times `python stages/<name>.py --help` (every module-level import, then argparse exits) and
lists the heavy libraries each one loads. The default `dvc repro` starts ~28 stage processes,
so one second here is ~30 s of a first run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mlflow", "umap", "sklearn", "matplotlib", "pandas", "h5py", "scipy")
PROBE = (
    "import runpy, sys; sys.argv = [{script!r}, '--help']\n"
    "try:\n    runpy.run_path({script!r}, run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print('LOADED', *sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print(f"$ python benchmarks/bench_startup.py --repeat {args.repeat}")
    print("| stage script | start-up s (median) | heavy libraries loaded |\n|---|---:|---|")
    total = 0.0
    for script in sorted((ROOT / "stages").glob("*.py")):
        code = PROBE.format(script=str(script), heavy=HEAVY)
        times, loaded = [], ""
        for _ in range(args.repeat):
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
            )
            times.append(time.perf_counter() - t)
            if proc.returncode:
                sys.exit(f"{script.name} failed to start:\n{proc.stderr[-2000:]}")
            loaded = proc.stdout.rsplit("LOADED", 1)[-1].split()
        med = statistics.median(times)
        total += med
        print(f"| {script.name} | {med:.2f} | {', '.join(loaded) or '-'} |")
    print(f"| sum over scripts | {total:.2f} | |")


if __name__ == "__main__":
    main()
