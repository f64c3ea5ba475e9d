"""Ports on 127.0.0.1 for the tests: one a server may take, and one that refuses connections.

``free_port()`` is free when asked; another process may take it before the server binds. Every
server fixture that uses it therefore retries with a new port when its server exits
complaining that the address is in use (see ``tests/mlflow_server.py``, ``MlflowServer`` in
``tests/faults/conftest.py``, the sshd fixture in ``tests/scale/conftest.py``). A server in this
process binds port 0 itself instead (``tests/httpserver.py``).

``refused_port()`` is for "nothing listens there": the port stays bound (not listening) by the
test for the whole ``with`` block, so connections to it are refused at once and no other
process can start listening on it meanwhile. Never assume a fixed port (9, 1, ...) is closed.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

ADDRESS_IN_USE = ("address already in use", "errno 98", "address in use")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lost_the_port(log: str) -> bool:
    """Whether a server's output says another process took its port first."""
    return any(marker in log.lower() for marker in ADDRESS_IN_USE)


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port refusing every connection while the block runs (bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextlib.contextmanager
def refused_url(path: str = "/Galaxy10_DECals.h5") -> Iterator[str]:
    """``http://127.0.0.1:<refused_port()><path>``: an offline host, refused at once."""
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}{path}"
