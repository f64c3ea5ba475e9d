"""What docs/scaling.md says about pinning one GPU per experiment, checked against installed DVC.

A stage sees the environment of the process that ran it: `dvc queue start -j N` hands ONE
environment to all N workers (so ``CUDA_VISIBLE_DEVICES`` cannot differ between them), while
concurrent `dvc exp run --temp` commands each keep their own. A probe stage records what it saw;
no GPU is needed to check which value reaches it. That two runs were alive at once is shown by
a rendezvous, not by timestamps: each probe checks in (a file in a shared folder), then waits for
another's check-in; a probe that finds one was still running when the other started.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import wait_for
from tests.pipeline_repo import env_for, run

pytestmark = pytest.mark.slow

PROBE = """\
import json, os, pathlib, time
meet = pathlib.Path(os.environ["PROBE_MEET"])
me = os.environ.get("DVC_EXP_NAME") or str(os.getpid())
(meet / me).touch()
others, end = [], time.monotonic() + 300  # alone after 300 s: the runs did not overlap
while not others and time.monotonic() < end:
    others = sorted(p.name for p in meet.iterdir() if p.name != me)
    time.sleep(0.2)
json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "exp": os.environ.get("DVC_EXP_NAME"),
           "met": others}, open("seen.json", "w"))
"""
DVC_YAML = """\
stages:
  probe:
    cmd: python probe.py
    deps: [probe.py]
    params: [p]
    outs:
      - seen.json:
          cache: false  # committed with the experiment: read back with git show
"""


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    env = env_for(root)
    dvc = [sys.executable, "-m", "dvc"]
    run(["git", "init", "-q"], root, env)
    run(dvc + ["init", "-q"], root, env)
    run(dvc + ["config", "core.analytics", "false"], root, env)
    (root / "probe.py").write_text(PROBE)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text("p: 0\n")
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "probe"], root, env)
    yield root
    # Workers leave once the queue is empty; a failed test may leave some waiting.
    run(dvc + ["queue", "stop", "--kill"], root, env, check=False)


def seen(repo: Path, name: str) -> dict:
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    [ref] = [r for r in refs if r.endswith(f"/{name}")]
    return json.loads(run(["git", "show", f"{ref}:seen.json"], repo).stdout)


@pytest.fixture
def meet(tmp_path) -> Path:
    """The probes' rendezvous folder, empty."""
    (tmp_path / "meet").mkdir()
    return tmp_path / "meet"


def test_queue_workers_share_the_environment_of_queue_start(repo, meet):
    env = env_for(repo)
    dvc = [sys.executable, "-m", "dvc"]
    run(dvc + ["exp", "run", "--queue", "-n", "g", "-S", "p=1,2"], repo, env)
    # `queue start` returns at once; its workers hold its output open, so give them none.
    subprocess.run(
        dvc + ["queue", "start", "-j", "2"],
        cwd=repo,
        env={**env, "CUDA_VISIBLE_DEVICES": "3", "PROBE_MEET": str(meet)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )

    def finished() -> bool:
        status = run(dvc + ["queue", "status"], repo, env).stdout
        assert "Failed" not in status, status
        return sum(ln.split()[-1] == "Success" for ln in status.splitlines() if " g-" in ln) == 2

    wait_for(finished, 600, "the two queued probes to finish", every=2)
    g1, g2 = seen(repo, "g-1"), seen(repo, "g-2")
    assert g1["cuda"] == g2["cuda"] == "3", (g1, g2)
    assert (g1["exp"], g2["exp"]) == ("g-1", "g-2")
    assert (g1["met"], g2["met"]) == (["g-2"], ["g-1"]), "the two workers did not run at once"


def test_temp_runs_keep_their_own_gpu(repo, tmp_path, meet):
    env = {**env_for(repo), "PROBE_MEET": str(meet)}
    dvc = [sys.executable, "-m", "dvc"]
    procs = [
        subprocess.Popen(
            dvc + ["exp", "run", "--temp", "-n", f"gpu{i}", "-S", f"p={i + 1}"],
            cwd=repo,
            env={**env, "CUDA_VISIBLE_DEVICES": str(i)},
            stdout=open(tmp_path / f"gpu{i}.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    try:
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = [(tmp_path / f"gpu{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    g0, g1 = seen(repo, "gpu0"), seen(repo, "gpu1")
    assert (g0["cuda"], g1["cuda"]) == ("0", "1"), (g0, g1)
    assert (g0["met"], g1["met"]) == (["gpu1"], ["gpu0"]), "the two --temp runs did not run at once"
