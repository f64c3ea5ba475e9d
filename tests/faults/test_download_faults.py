"""The real download stage (`dvc repro download`) against a loopback server that misbehaves,
and switching a fresh repository to the real data while offline.

A connection cut at several seeded random offsets still yields the file with the right SHA-256,
every cut resumed from what reached the disk (nothing lost, at most one chunk fetched twice);
a server serving wrong bytes never yields `data/galaxy10.h5` and leaves no partial files.
The README's switch (`dvc exp run --temp -S data.source=galaxy10_decals`) changes nothing when
offline; its recovery after a plain `dvc exp run` restores params, data and a clean `git status`;
`data.local_path` switches offline from a copy the user has, verified by SHA-256.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import sys

import pytest
import yaml

from deepgal.data.download import sha256_file
from tests.conftest import make_h5
from tests.httpserver import serve_bytes
from tests.pipeline_repo import dvc, make_repo, run
from tests.ports import refused_url

from .conftest import no_traceback

pytestmark = pytest.mark.slow

CHUNK = 1 << 20  # the stage streams in 1 MiB pieces: a partial last piece is not kept
# README "Switching to the real data": after a failed `dvc exp run` in the workspace. `touch`
# makes git look at params.yaml again even when a failed run left its index stale; `dvc repro`
# then takes the deleted data back from DVC's run cache (the failed run leaves dvc.lock alone).
# Not `git checkout dvc.lock && dvc checkout`: in a fresh clone the committed lock names
# checkpoints the clone never made (each run's carry its run id and timings).
RECOVERY = "touch params.yaml && git checkout -- params.yaml && dvc repro"


@pytest.fixture(scope="module")
def galaxy(tmp_path_factory) -> tuple[bytes, str]:
    """A real Galaxy10-layout file of ~4.7 MiB (random pixels do not compress)."""
    path = make_h5(tmp_path_factory.mktemp("served") / "g.h5", n_per_class=40, size=64, seed=3)
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def real_source(url: str, sha: str) -> dict:
    return {
        "data": {
            "source": "galaxy10_decals",
            "url": url,
            "sha256": sha,
            "retries": 8,
            "timeout_s": 10,
        }
    }


def leftovers(data_dir) -> list[str]:
    # params.ok, labelled.json: the `params` and `labelled` stages' markers, written before
    # download runs
    return sorted(
        p.name
        for p in data_dir.iterdir()
        if p.name not in (".gitignore", "params.ok", "labelled.json")
    )


def test_download_cut_repeatedly_completes_with_right_checksum(tmp_path, galaxy):
    data, sha = galaxy
    rng = random.Random(20240611)
    # Body bytes sent per request before the socket is shut: most cuts fall after a whole
    # chunk (progress), one inside the first chunk (no progress: costs a retry, not the file).
    drops = [rng.randint(CHUNK + 1, 2 * CHUNK - 1) for _ in range(3)]
    drops.insert(1, rng.randint(1, CHUNK - 1))
    with serve_bytes(data, drop_after_bytes=drops) as server:
        repo = make_repo(tmp_path / "repo", real_source(server.url, sha))
        out = dvc(["repro", "download"], repo)
        reqs = server.requests
        again = dvc(["repro", "download"], repo)
        assert len(server.requests) == len(reqs), "an up-to-date download fetched again"
    log = out.stdout + out.stderr
    dest = repo / "data/galaxy10.h5"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    assert dest.read_bytes() == data
    assert leftovers(repo / "data") == ["galaxy10.h5", "source.json"]
    info = json.loads((repo / "data/source.json").read_text())
    assert info["source"] == "galaxy10_decals" and info["sha256"] == sha
    assert info["n_images"] == 400
    assert "didn't change" in again.stdout

    # Every cut was resumed with Range from the bytes on disk, never from zero.
    assert len(reqs) == len(drops) + 1
    assert [r.bytes_sent for r in reqs[:-1]] == drops
    assert reqs[0].range is None
    start, refetched = 0, 0
    for prev, cur in itertools.pairwise(reqs):
        assert cur.range and cur.status == 206, cur
        got = int(cur.range.removeprefix("bytes=").rstrip("-"))
        assert start + prev.bytes_sent - CHUNK < got <= start + prev.bytes_sent
        assert got >= start  # never backwards
        refetched += start + prev.bytes_sent - got
        start = got
    assert start + reqs[-1].bytes_sent == len(data)
    assert refetched < len(drops) * CHUNK
    assert log.count("retry") >= len(drops), log[-3000:]


def test_wrong_bytes_never_become_the_data_file(tmp_path, galaxy):
    data, sha = galaxy
    with serve_bytes(data, corrupt=True) as server:  # same length, every byte inverted
        repo = make_repo(tmp_path / "repo", real_source(server.url, sha))
        out = dvc(["repro", "download"], repo, check=False)
    log = out.stdout + out.stderr
    assert out.returncode != 0, log[-3000:]
    assert no_traceback(log), log[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, log[-3000:]
    assert server.url in errors[0] and f"expected {sha}" in errors[0]
    assert "data.sha256" in errors[0] and "Re-run" in errors[0]  # says what to do
    assert leftovers(repo / "data") == [], "a partial or unverified file was left behind"


# -- switching to the real data: the documented path leaves a recoverable workspace -----------

SWITCH = ["-S", "data.source=galaxy10_decals", "-S", "data.retries=0"]


def committed_repo(root) -> tuple:
    """A fresh tiny repo, its pipeline cut to download + split (the stages a switch of source
    touches first), fully run, cached and committed (dvc.lock) as a user's would be."""
    repo = make_repo(root)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {
        k: pipeline["stages"][k] for k in ("params", "labelled", "download", "split")
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    dvc(["repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "synthetic data"], repo)
    return repo, sha256_file(repo / "data/galaxy10.h5"), (repo / "params.yaml").read_bytes()


def assert_as_committed(repo, data_sha: str, params: bytes) -> None:
    assert (repo / "params.yaml").read_bytes() == params
    assert sha256_file(repo / "data/galaxy10.h5") == data_sha
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    assert "up to date" in dvc(["status"], repo).stdout


def stale_index(repo, path: str) -> None:
    """Leave git's index as the issue found it after a failed `dvc exp run`: the committed blob
    with the edited file's stat, so `git status` calls the edited file unchanged and
    `git checkout -- <path>` restores nothing."""
    from dulwich.index import index_entry_from_stat
    from dulwich.repo import Repo

    r = Repo(str(repo))
    index = r.open_index()
    blob = r[r[r.head()].tree][path.encode()][1]
    index[path.encode()] = index_entry_from_stat(os.lstat(repo / path), blob)
    index.write()


def test_switch_offline_with_temp_changes_nothing(tmp_path):
    repo, data_sha, params = committed_repo(tmp_path / "repo")
    with refused_url() as url:
        # The README's order: the check first (seconds), then the switch in a temporary copy.
        check = run(
            [
                sys.executable,
                "stages/download.py",
                "--check",
                "--out",
                "data/galaxy10.h5",
                "-S",
                "data.source=galaxy10_decals",
                "-S",
                f"data.url={url}",
            ],
            repo,
            check=False,
        )
        assert check.returncode == 1 and "does not answer" in check.stderr, check.stderr
        out = dvc(["exp", "run", "--temp", *SWITCH, "-S", f"data.url={url}"], repo, check=False)
    log = out.stdout + out.stderr
    assert out.returncode != 0 and "could not download" in log, log[-3000:]
    assert_as_committed(repo, data_sha, params)


def test_failed_switch_in_the_workspace_is_recoverable(tmp_path):
    """Plain `dvc exp run` deletes the data before the download fails; the README's recovery
    brings everything back, even with git's index left stale."""
    repo, data_sha, params = committed_repo(tmp_path / "repo")
    with refused_url() as url:
        out = dvc(["exp", "run", *SWITCH, "-S", f"data.url={url}"], repo, check=False)
    assert out.returncode != 0, (out.stdout + out.stderr)[-3000:]
    assert not (repo / "data/galaxy10.h5").exists()  # what the README warns about
    assert (repo / "params.yaml").read_bytes() != params
    stale_index(repo, "params.yaml")
    # git is fooled about params.yaml; it sees dvc.lock change, because the `params` stage
    # passed and recorded the new params.yaml before download failed
    assert run(["git", "status", "--porcelain"], repo).stdout == " M dvc.lock\n"
    run(["sh", "-c", RECOVERY], repo)
    assert_as_committed(repo, data_sha, params)


def test_failed_switch_in_a_fresh_clone_is_recoverable(tmp_path):
    """As a fresh clone of this repository is: its own `dvc repro` wrote checkpoints other than
    the committed dvc.lock's, and its lock is not committed. The recovery restores the data
    and keeps the clone's own lock and outputs."""
    repo = make_repo(tmp_path / "repo")
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {
        k: pipeline["stages"][k] for k in ("params", "labelled", "download", "split", "train")
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    dvc(["repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "the lock upstream committed"], repo)
    committed_lock = (repo / "dvc.lock").read_text()
    # The clone: no DVC cache, no outputs; its own run.
    for name in (".dvc/cache", "models", "results", "data/split"):
        shutil.rmtree(repo / name, ignore_errors=True)
    for name in ("data/galaxy10.h5", "data/source.json"):
        (repo / name).unlink()
    dvc(["repro"], repo)
    own_lock = (repo / "dvc.lock").read_text()
    assert own_lock != committed_lock  # the checkpoints differ: what broke `dvc checkout`
    data_sha, params = sha256_file(repo / "data/galaxy10.h5"), (repo / "params.yaml").read_bytes()
    with refused_url() as url:
        out = dvc(["exp", "run", *SWITCH, "-S", f"data.url={url}"], repo, check=False)
    assert out.returncode != 0 and not (repo / "data/galaxy10.h5").exists()
    stale_index(repo, "params.yaml")
    run(["sh", "-c", RECOVERY], repo)
    assert (repo / "params.yaml").read_bytes() == params
    assert sha256_file(repo / "data/galaxy10.h5") == data_sha
    assert (repo / "dvc.lock").read_text() == own_lock
    assert "up to date" in dvc(["status"], repo).stdout


def test_switch_to_a_local_copy_offline(tmp_path, galaxy):
    data, sha = galaxy
    repo, data_sha, params = committed_repo(tmp_path / "repo")
    cache = tmp_path / "astroNN" / "Galaxy10_DECals.h5"
    cache.parent.mkdir()
    cache.write_bytes(data)
    with refused_url() as url:
        local = [*SWITCH, "-S", f"data.url={url}", "-S", f"data.local_path={cache}"]
        bad = dvc(
            ["exp", "run", "--temp", *local, "-S", f"data.sha256={'0' * 64}", "download"],
            repo,
            check=False,
        )
        assert bad.returncode != 0 and "data.local_path" in bad.stderr, bad.stderr[-3000:]
        assert_as_committed(repo, data_sha, params)
        dvc(
            [
                "exp",
                "run",
                "--temp",
                "-n",
                "real-local",
                *local,
                "-S",
                f"data.sha256={sha}",
                "download",
            ],
            repo,
        )
        assert_as_committed(repo, data_sha, params)  # --temp: the workspace waits for apply
        dvc(["exp", "apply", "real-local"], repo)
    assert (repo / "data/galaxy10.h5").read_bytes() == data
    info = json.loads((repo / "data/source.json").read_text())
    assert info["source"] == "galaxy10_decals" and info["sha256"] == sha
    assert cache.read_bytes() == data and os.access(cache, os.W_OK)  # the user's copy untouched
    assert "up to date" in dvc(["status", "download"], repo).stdout
