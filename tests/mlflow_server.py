"""A real `mlflow server` on 127.0.0.1 for tests, and a tiny REST client for asserting on it."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rest:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, **query) -> dict:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(f"{self.base}/api/2.0/mlflow/{path}?{qs}", timeout=10) as r:
            return json.load(r)

    def post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"{self.base}/api/2.0/mlflow/{path}",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def runs(self, experiment: str = "deepgal") -> list[dict]:
        exp = self.get("experiments/get-by-name", experiment_name=experiment)["experiment"]
        return self.post("runs/search", {"experiment_ids": [exp["experiment_id"]],
                                         "max_results": 1000}).get("runs", [])

    def history(self, run_id: str, key: str) -> list[dict]:
        return self.get("metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])


@contextlib.contextmanager
def mlflow_server(store: Path, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `mlflow server` on a SQLite store; yields (base URL, process); stops it after."""
    port = port or free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"mlflow server on {base} did not start")
                time.sleep(0.5)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
