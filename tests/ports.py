"""A free TCP port on 127.0.0.1, for servers the tests start.

The port is free when asked; another process may take it before the server binds. Every
server fixture that uses it therefore retries with a new port when its server exits
complaining that the address is in use (see ``tests/mlflow_server.py``, ``MlflowServer`` in
``tests/faults/conftest.py``, the sshd fixture in ``tests/scale/conftest.py``).
"""
from __future__ import annotations

import socket

ADDRESS_IN_USE = ("address already in use", "errno 98", "address in use")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lost_the_port(log: str) -> bool:
    """Whether a server's output says another process took its port first."""
    return any(marker in log.lower() for marker in ADDRESS_IN_USE)
