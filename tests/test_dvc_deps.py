"""dvc.yaml's library deps are exactly each stage's import closure (tests/deps.py).

The static check runs on every test run; a real `dvc status` check (edit one library file,
see which stages go stale) runs in the pipeline test, on a repository that has been built.
"""

from __future__ import annotations

import shutil

import yaml

from .deps import REPO, check, import_closure, write


def test_dvc_yaml_lists_exactly_what_each_stage_imports():
    problems = check(REPO / "dvc.yaml")
    assert not problems, (
        "dvc.yaml deps differ from the import closures "
        "(python -m tests.deps prints what to list):\n" + "\n".join(problems)
    )


def test_closure_follows_imports_through_the_library(tmp_path):
    lib = tmp_path / "deepgal"
    (lib / "sub").mkdir(parents=True)
    (lib / "__init__.py").write_text('"""docstring only: not code."""\n')
    (lib / "sub" / "__init__.py").write_text("from .b import B  # code: counts\n")
    (lib / "a.py").write_text("def f():\n    from .sub import c  # lazy import still runs\n")
    (lib / "sub" / "b.py").write_text("B = 1\n")
    (lib / "sub" / "c.py").write_text("from ..a import f\n")
    (lib / "unused.py").write_text("")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "s.py").write_text("from deepgal import a\n")
    assert import_closure(tmp_path / "stages" / "s.py", tmp_path) == {
        "deepgal/a.py",
        "deepgal/sub/__init__.py",
        "deepgal/sub/b.py",
        "deepgal/sub/c.py",
    }


def test_a_broken_dvc_yaml_is_caught(tmp_path):
    """The check fails when a stage misses a file it imports or lists one it never reads."""
    for name in ("deepgal", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    split_deps = spec["stages"]["split"]["deps"]
    dropped = "deepgal/data/galaxy10.py"
    split_deps.remove(dropped)
    spec["stages"]["split"]["deps"].append("deepgal/report.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    problems = check(tmp_path / "dvc.yaml", tmp_path)
    assert f"split: imports {dropped} but dvc.yaml does not list it" in problems
    assert "split: dvc.yaml lists deepgal/report.py, which it never imports" in problems
    assert all(p.startswith("split: ") for p in problems), problems


def test_a_declared_runs_file_is_in_the_closure(tmp_path):
    """A file the library runs without importing it (RUNS_FILES) counts, with its imports."""
    lib = tmp_path / "deepgal"
    lib.mkdir()
    (lib / "m.py").write_text('RUNS_FILES = ("loaded_by_mlflow.py",)\n')
    (lib / "loaded_by_mlflow.py").write_text("from deepgal import helper\n")
    (lib / "helper.py").write_text("")
    (lib / "other.py").write_text("")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "s.py").write_text("import deepgal.m\n")
    assert import_closure(tmp_path / "stages" / "s.py", tmp_path) == {
        "deepgal/m.py",
        "deepgal/loaded_by_mlflow.py",
        "deepgal/helper.py",
    }


def test_write_repairs_a_broken_dvc_yaml_and_keeps_the_rest(tmp_path):
    """`python -m tests.deps --write` makes the check pass again; comments and the data,
    params and outs entries come through unchanged."""
    for name in ("deepgal", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    text = (REPO / "dvc.yaml").read_text()
    broken = text.replace("      - deepgal/data/galaxy10.py\n", "", 1).replace(
        "        - deepgal/selection.py\n",
        "        - deepgal/selection.py\n        - deepgal/report.py\n        - deepgal/plots\n",
        1,
    )
    assert broken != text
    (tmp_path / "dvc.yaml").write_text(broken)
    assert check(tmp_path / "dvc.yaml", tmp_path)  # the control: it is broken
    assert write(tmp_path / "dvc.yaml", tmp_path)
    assert check(tmp_path / "dvc.yaml", tmp_path) == []
    fixed = (tmp_path / "dvc.yaml").read_text()
    comments = [ln for ln in text.splitlines() if ln.lstrip().startswith("#")]
    assert comments == [ln for ln in fixed.splitlines() if ln.lstrip().startswith("#")]
    before, after = yaml.safe_load(text)["stages"], yaml.safe_load(fixed)["stages"]
    assert before.keys() == after.keys()
    for name in before:
        b, a = before[name].get("do", before[name]), after[name].get("do", after[name])
        assert {k: v for k, v in b.items() if k != "deps"} == {
            k: v for k, v in a.items() if k != "deps"
        }, name

        def lib(deps):
            return [d for d in deps if not (isinstance(d, str) and d.startswith("deepgal"))]

        assert lib(b.get("deps", [])) == lib(a.get("deps", [])), name
    assert write(tmp_path / "dvc.yaml", tmp_path) == []  # idempotent
