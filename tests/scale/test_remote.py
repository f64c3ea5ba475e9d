"""Sharing data and models through a DVC remote, as a team does it.

One person runs the whole tiny pipeline, commits what git tracks (``dvc.lock`` and the small
``cache: false`` outputs), and ``dvc push``es the rest (data, split, checkpoints, features,
embeddings) to a remote. A teammate clones the git repository, runs ``dvc pull``, and then
``dvc status`` is clean and ``dvc repro`` runs nothing. Once against a local-directory remote,
once against a real SSH remote (OpenSSH on 127.0.0.1, ``dvc-ssh``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.pipeline_repo import dvc, make_repo, run

pytestmark = pytest.mark.slow

UP_TO_DATE = "Data and pipelines are up to date."
# One variant and PCA only: every stage of the DAG runs, in a fraction of the tiny default's time.
ONE_VARIANT = {
    "variants": {"smallnet": {"input_size": 16, "crop": 0.5}},
    "reduce": {"pca_dims": 10, "methods": {"pca": {}}},
}
# What only the DVC remote carries (gitignored by DVC): it must arrive byte-identical.
CACHED = (
    "data/galaxy10.h5",
    "data/source.json",
    "data/split",
    "models/smallnet/checkpoints",
    "models/smallnet/mlflow_run.json",
    "models/smallnet/features.h5",
    "results/smallnet/embeddings.csv",
    "results/smallnet/predictions.csv",
    "reports/smallnet/confusion",
    "reports/plots",
)


def digests(repo: Path) -> dict[str, str]:
    """SHA-256 of every file under the CACHED paths, keyed by path relative to ``repo``."""
    found = {}
    for top in CACHED:
        p = repo / top
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            found[str(f.relative_to(repo))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A repository after a full ``dvc repro``, with everything git tracks committed."""
    repo = make_repo(tmp_path_factory.mktemp("remote") / "origin", ONE_VARIANT)
    dvc(["repro"], repo)
    # `git add -A` takes dvc.lock, the .gitignore files DVC wrote for cached outputs, and the
    # cache: false outputs (metrics, history, selection, reports): exactly what git must carry.
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline results"], repo)
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    return repo


def share_and_clone(
    origin: Path, name: str, url: str, mate: Path, local_config: dict[str, str] | None = None
) -> dict[str, str]:
    """Push ``origin`` to the remote ``name`` at ``url``, then clone and pull it at ``mate``.

    ``local_config``: per-user remote settings (e.g. a key file), kept out of git in
    ``.dvc/config.local`` and set again in the clone, as a teammate would. Returns what the
    teammate's ``dvc status`` and ``dvc repro`` printed.
    """
    dvc(["remote", "add", "-f", "-d", name, url], origin)
    for key, value in (local_config or {}).items():
        dvc(["remote", "modify", "--local", name, key, value], origin)
    run(["git", "commit", "-qm", f"remote {name}", ".dvc/config"], origin)
    pushed = dvc(["push"], origin).stdout
    assert "pushed" in pushed, pushed
    assert "in sync" in dvc(["status", "--cloud"], origin).stdout

    run(["git", "clone", "-q", str(origin), str(mate)], origin.parent)
    for key, value in (local_config or {}).items():
        dvc(["remote", "modify", "--local", name, key, value], mate)
    # The clone alone is not runnable: the data and models are only in the remote.
    assert UP_TO_DATE not in dvc(["status"], mate).stdout
    assert not (mate / "data/galaxy10.h5").exists()
    dvc(["pull"], mate)
    assert digests(mate) == digests(origin)
    status = dvc(["status"], mate).stdout
    repro = dvc(["repro"], mate)
    return {"status": status, "repro": repro.stdout + repro.stderr}


def assert_no_op(seen: dict[str, str]) -> None:
    assert UP_TO_DATE in seen["status"], seen["status"]
    assert "Running stage" not in seen["repro"], seen["repro"][-4000:]
    assert UP_TO_DATE in seen["repro"], seen["repro"][-4000:]


def test_local_remote_round_trip(origin, tmp_path):
    store = tmp_path / "store"
    seen = share_and_clone(origin, "shared", str(store), tmp_path / "mate")
    assert any(store.rglob("*")), "dvc push wrote nothing to the remote"
    assert_no_op(seen)


def test_ssh_remote_round_trip(origin, tmp_path, sshd):
    store = tmp_path / "ssh-store"  # reached only through sshd: the clone knows the ssh:// URL
    seen = share_and_clone(
        origin, "team", sshd.url(store), tmp_path / "mate", {"keyfile": str(sshd.key)}
    )
    assert any(store.rglob("*")), "dvc push over SSH wrote nothing to the remote"
    assert_no_op(seen)
