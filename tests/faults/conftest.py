"""Fixtures of the fault suite: background processes, a real MLflow server, waiting with a limit.

Every process started here runs in its own session (process group), so a test can SIGKILL the
whole tree (`dvc` -> stage -> python) and a fixture can always clean it up, even when the test
failed half-way.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.mlflow_server import Rest
from tests.pipeline_repo import env_for
from tests.ports import free_port, lost_the_port

# Per-epoch numbers that must be identical between a resumed and an uninterrupted run (the
# timing columns, seconds and images_per_s, legitimately differ).
EXACT_KEYS = ("epoch", "train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr")
TRAIN_CMD = (
    "python stages/train.py --variant {v} --data data/galaxy10.h5 "
    "--source data/source.json --split data/split --out models/{v} --results results/{v}"
)


def wait_for(
    pred: Callable[[], object],
    timeout: float,
    what: str,
    every: float = 0.1,
    proc: Proc | None = None,
):
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``timeout`` s.

    With ``proc``, also fail at once if that process exits first (its log goes in the message).
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited ({proc.returncode}) first:\n{proc.tail()}")
        time.sleep(every)
    pytest.fail(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{proc.tail()}" if proc else "")
    )


class Proc:
    """A background command in its own process group, its output in a file."""

    def __init__(self, cmd: list[str] | str, cwd: Path, env: dict, log: Path):
        self.log = log
        self._fh = open(log, "wb")
        self.p = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            shell=isinstance(cmd, str),
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    @property
    def returncode(self) -> int | None:
        return self.p.returncode

    def poll(self) -> int | None:
        return self.p.poll()

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 4000) -> str:
        return self.output()[-n:]

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def signal(self, sig: int) -> None:
        """Signal the leader only (as `kill PID` would)."""
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"{self.p.args} still running after {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL what is left; close the log."""
        if self.p.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)  # stragglers in the group, leader gone or not
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._fh.close()


@pytest.fixture
def procs():
    """Start background commands with ``procs(cmd, cwd, env, log)``; all are stopped afterwards."""
    started: list[Proc] = []

    def start(cmd, cwd: Path, env: dict, log: Path) -> Proc:
        p = Proc(cmd, cwd, env, log)
        started.append(p)
        return p

    yield start
    for p in reversed(started):
        p.stop()


# ---- MLflow --------------------------------------------------------------------------------


class MlflowServer(Rest):
    """`mlflow server` on 127.0.0.1 over a SQLite store; kill and restart it on the same port.
    Its REST API is ``tests.mlflow_server.Rest``'s (``get``, ``post``, ``runs``, ``history``)."""

    def __init__(self, db: Path, workdir: Path, port: int | None = None):
        self.db, self.workdir = db, workdir
        self.port = port or free_port()
        self.uri = self.base = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None
        self.starts = 0

    def start(self, timeout: float = 90) -> MlflowServer:
        self.starts += 1
        env = {**env_for(self.workdir), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI")
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.db}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--artifacts-destination",
            str(self.workdir / "mlartifacts"),
        ]
        self.proc = Proc(cmd, self.workdir, env, self.workdir / f"mlflow-server-{self.starts}.log")
        end = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                # The first start may lose its port to another process: take a new one. A
                # restart must keep its port (the training run knows only that URI).
                if self.starts == 1 and lost_the_port(self.proc.tail()):
                    self.port = free_port()
                    self.uri = self.base = f"http://127.0.0.1:{self.port}"
                    return self.start(timeout)
                pytest.fail(f"mlflow server exited ({self.proc.returncode}):\n{self.proc.tail()}")
            if time.monotonic() > end:
                pytest.fail(
                    f"timed out after {timeout:.0f} s waiting for mlflow server on "
                    f"port {self.port}\n{self.proc.tail()}"
                )
            time.sleep(0.3)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.signal_group(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stop()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def steps(self, run_id: str, key: str = "val/accuracy") -> list[int]:
        return sorted(int(m.get("step", 0)) for m in self.history(run_id, key))


@pytest.fixture
def mlflow_server(tmp_path):
    """Factory: ``mlflow_server(db)`` starts a server on that store; all are stopped afterwards."""
    servers: list[MlflowServer] = []

    def start(db: Path, port: int | None = None) -> MlflowServer:
        s = MlflowServer(db, tmp_path, port).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def sqlite_runs(db: Path) -> list[dict]:
    """Runs of the store: name, run_uuid, status, experiment name; read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(
            "select r.name, r.run_uuid, r.status, e.name from runs r join experiments e "
            "on r.experiment_id = e.experiment_id where r.lifecycle_stage = 'active'"
        ).fetchall()
    finally:
        con.close()
    return [dict(zip(("name", "run_id", "status", "experiment"), r, strict=True)) for r in rows]


def sqlite_steps(db: Path, run_id: str, key: str = "val/accuracy") -> list[int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [
            r[0]
            for r in con.execute(
                "select step from metrics where run_uuid = ? and key = ? order by step",
                (run_id, key),
            )
        ]
    finally:
        con.close()


def sqlite_tags(db: Path, run_id: str) -> dict[str, str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return dict(con.execute("select key, value from tags where run_uuid = ?", (run_id,)))
    finally:
        con.close()


# ---- checkpoints and results ---------------------------------------------------------------


def ckpt_epoch(path: Path) -> int | None:
    """The epoch a checkpoint file records, or None while it is absent or unreadable."""
    from deepgal import checkpoint as ckpt_io

    if not path.exists():
        return None
    try:
        return int(ckpt_io.load(path)["epoch"])
    except ckpt_io.CheckpointError:
        return None


def exact_history(results: Path) -> list[dict]:
    """history.csv rows reduced to the columns that must be reproducible."""
    import pandas as pd

    df = pd.read_csv(results / "history.csv")
    return [{k: row[k] for k in EXACT_KEYS} for row in df.to_dict("records")]


def exact_metrics(results: Path) -> dict:
    """train.json without the timing and tracking entries."""
    m = json.loads((results / "train.json").read_text())
    return {k: v for k, v in m.items() if k not in ("seconds", "images_per_s", "train_seconds")}


def no_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" not in text


def one_variant_params(epochs: int, batch_size: int = 8, checkpoint_every: int = 2) -> dict:
    """Tiny-repo overrides: one variant, enough images and small batches that an epoch lasts
    seconds (long enough to interrupt inside it), not milliseconds."""
    return {
        "data": {"synthetic": {"image_size": 32, "per_class": 40}},
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "checkpoint_every": checkpoint_every,
            "warmup_epochs": 0,
            "lr": 0.02,
        },
        "variants": {"smallnet": {"input_size": 32, "crop": 1.0}},
    }
