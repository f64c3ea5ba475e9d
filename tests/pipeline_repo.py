"""Make a temporary git + DVC copy of this project with a tiny configuration, and run `dvc` in it.

Used by the pipeline test and the fault suite: real `dvc` processes, real files, a real MLflow
SQLite store inside the temporary repository.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "data": {"synthetic": {"image_size": 32, "per_class": 8}},
    "train": {"epochs": 3, "batch_size": 16, "checkpoint_every": 1, "warmup_epochs": 0, "lr": 0.02},
    "variants": {"smallnet": {"input_size": 16, "crop": 0.5}, "customnet": {"input_size": 16}},
    "reduce": {
        "pca_dims": 10,
        "methods": {
            "pca": {},
            "tsne": {"perplexity": 5},
            "umap": {"n_neighbors": 5, "min_dist": 0.1, "metric": "euclidean"},
        },
    },
}


def tiny_params(overrides: dict | None = None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in {**TINY, **(overrides or {})}.items():
        if section == "variants":
            params[section] = copy.deepcopy(values)
        elif isinstance(values, dict):
            merged = params.setdefault(section, {})
            for k, v in values.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict) and k != "methods":
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
        else:
            params[section] = values
    return params


def env_for(repo: Path, **extra: str) -> dict[str, str]:
    """PATH with this interpreter first (stage commands call `python`), store inside the repo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The stages import the repository's own copy of deepgal (the one its dvc.lock hashes),
    # not the editable install's: edits to this checkout cannot leak into a running repro.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH", "")]))
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{repo / 'mlflow.db'}"
    # One numba JIT cache for every temporary repository: UMAP compiles once per machine, not
    # once per test repo (the stages only set it when it is unset).
    env["NUMBA_CACHE_DIR"] = str(REPO / ".cache" / "numba")
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "deepgal test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@deepgal.invalid"
    env.update(extra)
    return env


def make_repo(root: Path, overrides: dict | None = None, tiny: bool = True) -> Path:
    """A committed git + DVC repository at ``root`` holding the project (tiny params unless
    ``tiny`` is False: then the repository's own params.yaml, as a user runs it)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".gitignore", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    for name in ("stages", "deepgal", "labelled", "finetune"):
        shutil.copytree(
            REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    (root / "data").mkdir(exist_ok=True)
    shutil.copy(REPO / "data" / ".gitignore", root / "data" / ".gitignore")
    if tiny:
        (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(overrides), sort_keys=False))
    else:
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
    env = env_for(root)
    run(["git", "init", "-q"], root, env)
    run([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root, env)
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")  # after init, which writes its own
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "tiny deepgal"], root, env)
    return root


def run(
    cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env or env_for(cwd), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def dvc(args: list[str], repo: Path, check: bool = True, **env) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], repo, env_for(repo, **env), check=check)
