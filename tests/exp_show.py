"""`dvc exp show` as a person sees it: run in a real pseudo-terminal of a given width.

DVC draws its table with rich, which squeezes columns into the terminal and replaces what does
not fit with "…"; piped output is never squeezed, so only a terminal shows what a user reads.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
from pathlib import Path

# The README's compact view, read from the README itself so the two cannot drift apart: test
# accuracy of every variant plus whatever params changed. DVC matches --drop/--keep with
# re.match (from the start of the column name), hence the ".*"; ".*/", "results$" and
# "params.yaml$" drop the hash columns of the dependencies and outputs a run changes, and
# "Created|State|Executor" the columns a --queue grid adds.
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_exp_show_args() -> list[str]:
    """The arguments of the README's first ``dvc exp show`` line (with its continuation)."""
    lines = README.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("dvc exp show "))
    cmd = lines[i]
    while cmd.rstrip().endswith("\\"):
        i += 1
        cmd = cmd.rstrip()[:-1] + " " + lines[i]
    return shlex.split(cmd, comments=True)[3:]


EXP_SHOW_ARGS = readme_exp_show_args()
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def exp_show_in_terminal(
    repo: Path, env: dict, columns: int = 200, args: list[str] = EXP_SHOW_ARGS
) -> list[str]:
    """The lines `dvc exp show ARGS` draws in a ``columns``-wide terminal (ANSI codes removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    env = {**env, "COLUMNS": str(columns), "LINES": "60", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "exp", "show", "--no-pager", *args],
        cwd=repo,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    text = _ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "")
    if proc.returncode:
        raise AssertionError(f"dvc exp show failed ({proc.returncode}):\n{text[-3000:]}")
    return [line.rstrip() for line in text.splitlines() if line.strip()]
