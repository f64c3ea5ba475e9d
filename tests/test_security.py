"""Security: checkpoints are data, never code; secrets stay out of logs; the UI stays local.

- A pickle whose ``__reduce__`` would create a marker file (``tests.helpers.malicious_files``)
  is refused by the checkpoint loader, by ``deepgal evaluate --checkpoint`` and as
  ``pretrained:`` weights; the marker never appears (a control proves the payload is live: an
  unsafe ``torch.load`` does create it).
- A tracking URI with a password is redacted in everything the train stage prints.
- ``deepgal ui`` listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepgal import checkpoint as ckpt_io
from deepgal.data import galaxy10
from deepgal.models import PretrainedWeightsError, build_model
from tests.conftest import make_h5
from tests.faults.conftest import wait_for
from tests.helpers import make_workdir, malicious_files
from tests.pipeline_repo import REPO
from tests.ports import free_port, lost_the_port, refused_port

SECRET = "s3cret"


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    return malicious_files(tmp_path, marker), marker


def test_payload_is_live(tmp_path):
    """The control: loading these files the unsafe way does run code (in a child process)."""
    marker = tmp_path / "control_marker"
    for name, path in malicious_files(tmp_path / "control", marker).items():
        marker.unlink(missing_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, torch; torch.load(sys.argv[1], weights_only=False)",
                str(path),
            ],
            capture_output=True,
            timeout=120,
        )
        assert marker.exists(), f"{name}: the payload did not run even unsafely"


def test_checkpoint_loader_refuses_code(evil):
    files, marker = evil
    for name, path in files.items():
        with pytest.raises(ckpt_io.CheckpointError) as e:
            ckpt_io.load(path)
        assert str(e.value).startswith(f"{path}: unreadable or unsafe"), (name, e.value)
        # torch's own text advises weights_only=False; a refusal must not pass that on
        assert "likely succeed" not in str(e.value), (name, e.value)
    assert not marker.exists()


def test_resume_skips_code_carrying_checkpoints_to_a_safe_one(evil, tmp_path):
    """Evil files under the names resume tries first: skipped, the good older one is taken."""
    files, marker = evil
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    ckpt_io.save(
        ckpts / "epoch_001.pt", {"model": {"w": torch.zeros(2)}, "epoch": 1, "fingerprint": "x"}
    )
    (ckpts / "last.pt").write_bytes(files["torch_zip"].read_bytes())
    (ckpts / "epoch_003.pt").write_bytes(files["inside_checkpoint"].read_bytes())
    (ckpts / "epoch_002.pt").write_bytes(files["legacy_pickle"].read_bytes())
    state = ckpt_io.find_resumable(ckpts, "x")
    assert state is not None and state["epoch"] == 1
    assert not marker.exists()


def test_pretrained_weights_refuse_code(evil):
    files, marker = evil
    for name, path in files.items():
        with pytest.raises(PretrainedWeightsError) as e:
            build_model("smallnet", galaxy10.NUM_CLASSES, 32, pretrained=str(path))
        assert str(path) in str(e.value), name
    assert not marker.exists()


def test_cli_evaluate_refuses_code(evil, tmp_path):
    files, marker = evil
    data = make_h5(tmp_path / "data.h5")
    for name, path in files.items():
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "deepgal.cli",
                "evaluate",
                "--checkpoint",
                str(path),
                "--data",
                str(data),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 1, (name, p.stderr[-2000:])
        assert "Traceback" not in p.stderr, p.stderr[-2000:]
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, p.stderr
        assert errors[0].startswith(f"error: {path}: unreadable or unsafe"), errors
    assert not marker.exists()


# ---- secrets in tracking URIs -----------------------------------------------------------------


@pytest.fixture
def train_dir(tmp_path) -> Path:
    """A working directory where `stages/train.py` can run: params, data, split, source."""
    return make_workdir(tmp_path / "work", train={"epochs": 1, "batch_size": 16})


def run_train(cwd: Path, uri: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["MLFLOW_TRACKING_URI"] = uri
    cmd = [
        sys.executable,
        str(REPO / "stages/train.py"),
        "--variant",
        "smallnet",
        "--data",
        "data/galaxy10.h5",
        "--source",
        "data/source.json",
        "--split",
        "data/split",
        "--out",
        "models/smallnet",
        "--results",
        "results/smallnet",
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_password_in_unreachable_tracking_uri_is_redacted(train_dir):
    with refused_port() as port:
        p = run_train(train_dir, f"http://user:{SECRET}@127.0.0.1:{port}/")
    assert p.returncode == 1, p.stderr[-3000:]
    assert SECRET not in p.stdout and SECRET not in p.stderr, p.stderr[-3000:]
    [error] = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert "http://user:***@127.0.0.1" in error  # still says which tracker


@pytest.mark.slow
def test_password_in_working_tracking_uri_is_redacted(train_dir, tmp_path):
    """A live server (it ignores the credentials): nothing printed on the way carries them."""
    from tests.faults.conftest import MlflowServer

    server = MlflowServer(tmp_path / "mlflow.db", tmp_path)
    try:
        server.start()
        p = run_train(train_dir, server.uri.replace("http://", f"http://user:{SECRET}@"))
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr[-3000:]
    assert SECRET not in p.stdout + p.stderr, [
        ln for ln in (p.stdout + p.stderr).splitlines() if SECRET in ln
    ]
    saved = (train_dir / "models/smallnet/mlflow_run.json").read_text()
    assert SECRET not in saved and "***" in saved


# ---- the UI -----------------------------------------------------------------------------------


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_ui(tmp_path: Path, env: dict) -> tuple[subprocess.Popen, int]:
    """`deepgal ui` on a free port, once its server answers and its probe is done (the "Ctrl-C
    stops" line); started again on another port if another process took that one first."""
    log = tmp_path / "ui.log"
    for _ in range(5):
        port = free_port()
        with open(log, "wb") as out:
            ui = subprocess.Popen(
                [sys.executable, "-m", "deepgal.cli", "ui", "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda ui=ui, port=port: (
                ui.poll() is not None
                or (connects("127.0.0.1", port) and b"Ctrl-C stops" in log.read_bytes())
            ),
            120,
            "deepgal ui to serve and print its link",
            every=0.5,
        )
        if ui.poll() is None:
            return ui, port
        if not lost_the_port(log.read_text(errors="replace")):
            pytest.fail(f"deepgal ui exited ({ui.returncode}):\n{log.read_text()[-3000:]}")
    pytest.fail(f"deepgal ui lost its port 5 times:\n{log.read_text()[-3000:]}")


# `kill PID` (SIGTERM) or Ctrl-C (SIGINT) to `deepgal ui` alone: the server it started in a
# session of its own must stop with it, not be orphaned holding the port.
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_ui_listens_on_loopback_only_and_stops_with_its_server(tmp_path, stop):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ui, port = start_ui(tmp_path, env)
    try:
        _check_ui(ui, port, stop, tmp_path)
    finally:
        # The server is in its own process group, out of reach of the killpg below: when a
        # check fails, it would outlive the test and hold the port.
        _kill_listeners(port)


def _check_ui(ui: subprocess.Popen, port: int, stop, tmp_path: Path) -> None:
    try:
        # Bound to 127.0.0.1 itself: another loopback address, or this host's own address on
        # the network, finds nothing there (a 0.0.0.0 bind would answer both).
        assert not connects("127.0.0.2", port)
        others = {
            a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        } - {"127.0.0.1"}
        for addr in others:
            assert not connects(addr, port), addr
        listening = _listeners(port)
        assert listening and listening <= {"127.0.0.1"}, listening
        assert ui.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]  # the port was its
    finally:
        ui.send_signal(stop)  # to `deepgal ui` only, as `kill PID` does
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=20)
    # The server shuts down before `deepgal ui` returns; the bounded wait only covers the
    # kernel closing the socket.
    wait_for(lambda: not connects("127.0.0.1", port), 30, "the MLflow server to stop with ui")
    # What the user reads: the link, not the server's deprecation warnings, its registry notice
    # or a log line per request (the probe for the experiment made one).
    text = (tmp_path / "ui.log").read_text()
    assert "MLflow UI on" in text and "Warning" not in text, text
    assert "Registry store URI not provided" not in text and "GET /api" not in text, text


def _kill_listeners(port: int) -> None:
    """Kill whatever process still listens on TCP ``port`` (a left-over server)."""
    import psutil

    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            try:
                proc = psutil.Process(c.pid)
                for p in [*proc.children(recursive=True), proc]:
                    p.kill()
            except psutil.NoSuchProcess:
                pass


def _listeners(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:  # 0A = LISTEN
                continue
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
            else:
                raw = b"".join(bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, 32, 8))
                found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found
