"""A throw-away PostgreSQL server on 127.0.0.1 for tests: Debian's packages, installed if absent.

The cluster lives in a fresh folder with its own password (scram-sha-256). Clients get it from
a ``~/.pgpass``-format file named by ``PGPASSFILE``, never from a URI, so it cannot land in a
log, a param or a tag. PostgreSQL refuses to run as root: as root the cluster belongs to the
``postgres`` user that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port, lost_the_port

USER, DATABASE = "deepgal", "mlflow"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def ensure_installed() -> Path:
    """Debian's PostgreSQL server (``apt-get install postgresql``) and psycopg2 (PyPI)."""
    if _bin_dir() is None:
        if os.geteuid() != 0:
            raise RuntimeError(
                "PostgreSQL is not installed and this is not root: run "
                "`apt-get install -y postgresql` first"
            )
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "postgresql"],
        ):
            subprocess.run(
                cmd,
                check=True,
                capture_output=True,
                timeout=900,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
    try:
        import psycopg2  # noqa: F401  (MLflow's PostgreSQL driver)
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "psycopg2-binary"],
            check=True,
            timeout=600,
        )
    return _bin_dir()


@dataclass
class Postgres:
    port: int
    password: str
    pgpass: Path  # a ~/.pgpass-format file; give clients PGPASSFILE=<it>
    folder: Path

    @property
    def uri(self) -> str:
        """No password in it: libpq reads it from PGPASSFILE. The driver is named because
        SQLAlchemy 2.1 made psycopg (3) the default and we install psycopg2."""
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def client_env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSFILE": str(self.pgpass)}

    def query(self, sql: str) -> list[tuple]:
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(
                host="127.0.0.1",
                port=self.port,
                user=USER,
                dbname=DATABASE,
                passfile=str(self.pgpass),
            )
        ) as c:
            with c.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Start PostgreSQL on 127.0.0.1 (free port) in a new folder; stop and delete it after."""
    bin_dir = ensure_installed()
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="deepgal-pg-"))
    data, log = folder / "data", folder / "server.log"
    password = secrets.token_urlsafe(18)
    pwfile = folder / "pw"
    pwfile.write_text(password + "\n")
    pgpass = folder / "pgpass"
    pgpass.write_text(f"127.0.0.1:*:*:{USER}:{password}\n")
    pgpass.chmod(0o600)  # libpq ignores a pgpass file others can read
    if as_root:
        shutil.chown(folder, "postgres")
        shutil.chown(pwfile, "postgres")
        folder.chmod(0o711)  # root's client (pgpass) stays root's

    def pg(*args: str) -> subprocess.CompletedProcess:
        cmd = [str(bin_dir / args[0]), *args[1:]]
        if as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    started = False
    try:
        init = pg(
            "initdb",
            "-D",
            str(data),
            "-U",
            USER,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C",
        )
        assert init.returncode == 0, init.stdout + init.stderr
        pwfile.unlink()
        for _ in range(5):  # another process may take the free port before the server binds it
            port = free_port()
            log.unlink(missing_ok=True)
            start = pg(
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {folder}",
                "start",
            )
            started = start.returncode == 0
            said = start.stdout + start.stderr + (log.read_text() if log.exists() else "")
            if started or not lost_the_port(said):
                break
        assert started, said
        server = Postgres(port, password, pgpass, folder)
        made = subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
            env=server.client_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        yield server
    finally:
        if started:
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
