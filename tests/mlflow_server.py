"""A real `mlflow server` and a real `mlflow models serve` on 127.0.0.1 for tests, and a tiny REST
client for asserting on the first."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.ports import free_port, lost_the_port

STARTUP_S = 300

# Loopback is never reached through a proxy, whatever the environment (or an earlier test that
# left urllib's global opener built with proxy variables set) says.
_open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


class Rest:
    def __init__(self, base: str):
        self.base = base

    def get(self, endpoint: str, **query) -> dict:
        url = f"{self.base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        with _open(url, timeout=10) as r:
            return json.load(r)

    def post(self, endpoint: str, body: dict) -> dict:
        req = urllib.request.Request(
            f"{self.base}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with _open(req, timeout=10) as r:
            return json.load(r)

    def runs(self, experiment: str = "deepgal") -> list[dict]:
        """Every run of ``experiment``; none while the experiment does not exist yet."""
        try:
            exp = self.get("experiments/get-by-name", experiment_name=experiment)["experiment"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise
        return self.post(
            "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
        ).get("runs", [])

    def history(self, run_id: str, key: str) -> list[dict]:
        return self.get("metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])

    def artifacts(self, run_id: str, path: str = "") -> list[str]:
        """Paths of the run's artifacts under ``path``, recursively."""
        files = self.get("artifacts/list", run_id=run_id, path=path).get("files", [])
        out = []
        for f in files:
            out += self.artifacts(run_id, f["path"]) if f["is_dir"] else [f["path"]]
        return out


def _healthy(base: str) -> bool:
    try:
        with _open(f"{base}/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def mlflow_server(
    store: Path | str,
    artifacts: Path | None = None,
    env: dict | None = None,
    log: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `mlflow server` on ``store`` (a SQLite file, or any backend-store URI); yields
    (base URL, process) and stops it afterwards. ``artifacts``: serve artifacts from that
    folder (``--artifacts-destination``). A port taken between choosing and binding it makes
    the server exit: then it starts again on another port."""
    uri = f"sqlite:///{store}" if isinstance(store, Path) else store
    extra = ["--artifacts-destination", str(artifacts)] if artifacts else []
    env = {**(env or os.environ), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        *extra,
        "--host",
        "127.0.0.1",
        "--workers",
        "1",
    ]
    with _serving(argv, env, log, f"mlflow server on {uri.split('@')[-1]}") as served:
        yield served


@contextlib.contextmanager
def models_serve(
    model_uri: str, env: dict | None = None, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `mlflow models serve -m model_uri --env-manager local` (one worker, 127.0.0.1):
    the model server MLflow documents; yields (base URL, process), stops it afterwards."""
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--workers",
        "1",
    ]
    env = dict(env or os.environ)
    # MLflow starts the scoring server as `bash -c "exec uvicorn ..."`: the `uvicorn` of this
    # interpreter's environment must come first on PATH, as it does for a user whose venv is
    # active (CI calls .venv/bin/python without activating it).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with _serving(argv, env, log, f"mlflow models serve -m {model_uri}") as served:
        yield served


@contextlib.contextmanager
def _serving(
    argv: list[str], env: dict, log: Path | None, what: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``argv --port P`` on a free port until its ``/health`` answers 200; yields (base
    URL, process). A server that dies of a port taken meanwhile is started again elsewhere."""
    log = log or Path(tempfile.mkstemp(prefix="mlflow-server-", suffix=".log")[1])
    out = open(log, "ab")
    proc = None
    died = None
    try:
        for _ in range(3):
            port = free_port()
            proc = subprocess.Popen(
                [*argv, "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            base = f"http://127.0.0.1:{port}"
            # A loaded CI machine can take minutes to import MLflow: wait while it lives, and
            # start again on another port only when it died of a port someone else took.
            deadline = time.time() + STARTUP_S
            while proc.poll() is None and time.time() < deadline and not _healthy(base):
                time.sleep(0.5)
            if _healthy(base):
                break
            died = proc.poll()
            _stop(proc)
            if not lost_the_port(log.read_text(errors="replace")[-4000:]):
                break
        else:
            proc = None
        if proc is None or not _healthy(base):
            how = (
                f"exited with code {died}"
                if died is not None
                else f"did not start within {STARTUP_S} s"
            )
            raise RuntimeError(
                f"{what} {how}; its log ({log}) ends:\n" + log.read_text(errors="replace")[-3000:]
            )
        yield base, proc
    finally:
        if proc is not None:
            _stop(proc)
        out.close()


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=30)
