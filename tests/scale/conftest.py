"""Fixtures of the scale-out tests: a real OpenSSH server on 127.0.0.1 for an SSH DVC remote,
and the fault suite's ``procs`` (background commands in their own process groups).

Debian's ``openssh-server`` (``.ci/run`` installs it) runs in the foreground (``-D -e``) with a
throw-away host key, a throw-away client key authorised for the current user, and a config of
its own; nothing of the machine's SSH set-up is read or changed. The fixture stops it even when
the test fails. Outside CI (``DEEPGAL_CI`` unset) a machine without sshd or dvc-ssh skips the
test and says what to install; in CI that is a failure.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.conftest import Proc, free_port, procs, wait_for

__all__ = ["procs"]  # the fault suite's fixture: background commands, stopped afterwards

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {user}
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
"""


def _missing(what: str, install: str) -> None:
    message = f"{what} is not installed: {install} (.ci/run installs it)"
    if os.environ.get("DEEPGAL_CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class SshServer:
    port: int
    user: str
    key: Path  # the client's private key

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def _banner(port: int) -> bool:
    """True once something on the port answers with an SSH banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-2.0")
    except OSError:
        return False


@pytest.fixture
def sshd(tmp_path):
    sshd_bin = shutil.which("sshd") or (
        "/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None
    )
    if sshd_bin is None:
        _missing("sshd", "apt-get install -y openssh-server")
    if importlib.util.find_spec("dvc_ssh") is None:
        _missing("dvc-ssh", "pip install 'deepgal[ssh]'")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"deepgal-{name}",
                "-f",
                str(d / name),
            ],
            check=True,
            capture_output=True,
        )
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    if os.geteuid() == 0:
        # Root's sshd insists on its privilege-separation directory (systemd makes it at boot).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    user = getpass.getuser()
    proc = None
    try:
        for attempt in range(5):  # a free port can be taken between choosing and binding it
            port = free_port()
            (d / "sshd_config").write_text(
                SSHD_CONFIG.format(
                    port=port,
                    host_key=d / "host_key",
                    pid_file=d / "sshd.pid",
                    authorized=d / "authorized_keys",
                    user=user,
                )
            )
            proc = Proc(
                [sshd_bin, "-D", "-e", "-f", str(d / "sshd_config")],
                d,
                dict(os.environ),
                d / f"sshd-{attempt}.log",
            )
            wait_for(
                lambda port=port, proc=proc: _banner(port) or proc.poll() is not None,
                30,
                f"sshd on 127.0.0.1:{port}",
                every=0.1,
            )
            if proc.poll() is None:
                break
            if "Address already in use" not in proc.output():
                pytest.fail(f"sshd did not start:\n{proc.tail()}")
            proc.stop()
        else:
            pytest.fail(f"sshd found no free port in 5 tries:\n{proc.tail()}")
        yield SshServer(port, user, d / "client_key")
    finally:
        if proc is not None:
            proc.stop()
