"""No function in deepgal/ or stages/ is longer than 60 lines (STYLE.md: functions < 60 lines).

A function's length is its `def` line to its last line, docstring and comments included
(`end_lineno - lineno + 1`, decorators not counted), as read by `ast` from the files themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .deps import REPO

MAX_LINES = 60


def long_functions(root: Path, max_lines: int = MAX_LINES) -> list[str]:
    """`path:line name (N lines)` for every function under root/deepgal and root/stages
    longer than max_lines, nested functions and methods included, sorted by path."""
    found = []
    files = sorted([*(root / "deepgal").rglob("*.py"), *(root / "stages").rglob("*.py")])
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > max_lines:
                    where = f"{path.relative_to(root)}:{node.lineno}"
                    found.append(f"{where} {node.name} ({length} lines)")
    return found


def test_no_function_in_the_library_or_stages_exceeds_60_lines():
    offenders = long_functions(REPO)
    assert not offenders, (
        f"functions longer than {MAX_LINES} lines (split them into named, documented parts):\n"
        + "\n".join(offenders)
    )


def test_the_count_includes_docstrings_and_nested_and_async_functions(tmp_path):
    (tmp_path / "deepgal" / "sub").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    body = "    x = 1\n" * 57  # def + docstring + 57 statements + return = 60 lines
    ok = 'def fits():\n    """doc."""\n' + body + "    return x\n"
    (tmp_path / "deepgal" / "sub" / "a.py").write_text(ok)
    long_ = 'async def too_long():\n    """doc\n    two lines."""\n' + body + "    return x\n"
    nested = "class C:\n    def m(self):\n" + "        y = 2\n" * 60
    (tmp_path / "stages" / "s.py").write_text(long_ + nested)
    assert long_functions(tmp_path) == [
        "stages/s.py:1 too_long (61 lines)",
        "stages/s.py:63 m (61 lines)",
    ]
