"""`dvc exp show` as a person sees it: run in a real pseudo-terminal of a given width.

DVC draws its table with rich, which squeezes columns into the terminal and replaces what does
not fit with "…"; piped output is never squeezed, so only a terminal shows what a user reads.
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

# The README's compact view: test accuracy of every variant plus whatever params changed. DVC
# matches --drop/--keep with re.match (from the start of the column name), hence the ".*";
# ".*/", "results$" and "params.yaml$" drop the hash columns of the dependencies and outputs a
# run changes.
EXP_SHOW_ARGS = ["--only-changed",
                 "--drop", r".*\.(val_acc|val_f1|test_f1|epoch|train_min)$|.*/|results$"
                           r"|params\.yaml$",
                 "--keep", r".*\.test_acc$"]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def exp_show_in_terminal(repo: Path, env: dict, columns: int = 200,
                         args: list[str] = EXP_SHOW_ARGS) -> list[str]:
    """The lines `dvc exp show ARGS` draws in a ``columns``-wide terminal (ANSI codes removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    env = {**env, "COLUMNS": str(columns), "LINES": "60", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "exp", "show", "--no-pager", *args],
                            cwd=repo, env=env, stdin=slave, stdout=slave, stderr=slave)
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
