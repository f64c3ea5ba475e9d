"""What each DVC stage really reads of the library, against what dvc.yaml says it reads.

A stage script's *import closure* is every ``deepgal/`` file that running it can execute: the
modules it imports, directly or through other library modules, at module level or inside a
function (a lazy import still runs when the stage does). A package's ``__init__.py`` counts
when it holds code; a docstring-only one cannot change a result.

``dvc.yaml`` may name a library file or a folder; a folder stands for every ``.py`` file under
it, so a stage may depend on ``deepgal/plots`` only if it uses all of that sub-package.

A module that runs a library file without importing it (MLflow runs the "model from code" file
when the model is loaded) names it in a module-level ``RUNS_FILES = ("name.py", ...)``, paths
relative to the module's folder; the closure follows them like imports.

Nobody edits the library deps by hand: ``python -m tests.deps --write`` rewrites them in
``dvc.yaml`` (comments and every other dep kept) and ``tests/test_dvc_deps.py`` fails while
they differ.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LIB = "deepgal"


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _package_of(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts)  # a package's own relative imports start at itself
    return ".".join(parts[:-1])


def _imported(root: Path, path: Path) -> set[str]:
    """Dotted names of ``deepgal`` modules (or names inside them) that ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    pkg = _package_of(root, path) if path.is_relative_to(root / LIB) else ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    found |= {".".join(pkg.split(".") + [f.removesuffix(".py")]) for f in _runs_files(tree)}
    return {m for m in found if m == LIB or m.startswith(LIB + ".")}


def _runs_files(tree: ast.Module) -> list[str]:
    """The file names a module's top-level ``RUNS_FILES`` tuple or list declares."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "RUNS_FILES"
        ):
            return list(ast.literal_eval(node.value))
    return []


def _has_code(init: Path) -> bool:
    body = ast.parse(init.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return bool(body)


def import_closure(script: Path, root: Path = REPO) -> set[str]:
    """Repository-relative paths of every library file ``script`` can execute."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for dotted in _imported(root, path):
            parts = dotted.split(".")
            # importing a.b.c runs a/__init__, a/b/__init__ and a/b/c
            for i in range(1, len(parts) + 1):
                f = _module_file(root, ".".join(parts[:i]))
                if f is not None and f not in seen:
                    seen.add(f)
                    todo.append(f)
    return {str(p.relative_to(root)) for p in seen if p.name != "__init__.py" or _has_code(p)}


def stage_library_deps(dvc_yaml: Path, root: Path = REPO) -> dict[str, tuple[str, set[str]]]:
    """stage name -> (its script, the library files its deps name, folders expanded)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        deps = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])]
        script = next((d for d in deps if d.startswith("stages/")), None)
        files: set[str] = set()
        for d in deps:
            if d == LIB or d.startswith(LIB + "/"):
                p = root / d
                files |= (
                    {
                        str(f.relative_to(root))
                        for f in p.rglob("*.py")
                        if f.name != "__init__.py" or _has_code(f)
                    }
                    if p.is_dir()
                    else {d}
                )
        out[name] = (script, files)
    return out


def check(dvc_yaml: Path, root: Path = REPO) -> list[str]:
    """Every way ``dvc_yaml``'s library deps differ from the stages' import closures."""
    problems = []
    for name, (script, listed) in stage_library_deps(dvc_yaml, root).items():
        if script is None:
            problems.append(f"{name}: no stages/ script among its deps")
            continue
        used = import_closure(root / script, root)
        for f in sorted(used - listed):
            problems.append(f"{name}: imports {f} but dvc.yaml does not list it")
        for f in sorted(listed - used):
            problems.append(f"{name}: dvc.yaml lists {f}, which it never imports")
    return problems


def _code_files(folder: Path, root: Path) -> set[str]:
    return {
        str(f.relative_to(root))
        for f in folder.rglob("*.py")
        if f.name != "__init__.py" or _has_code(f)
    }


def dvc_entries(used: set[str], root: Path = REPO) -> list[str]:
    """``used`` as dvc.yaml names it: a sub-folder of the library when the stage uses every
    code file under it (the shortest such folder), the single files otherwise; sorted."""
    entries, covered = set(), set()
    folders = sorted(
        {
            p
            for f in used
            for p in Path(f).parents
            if p.parts and p.parts[0] == LIB and p != Path(LIB)
        },
        key=lambda p: len(p.parts),
    )
    for folder in folders:
        files = _code_files(root / folder, root)
        if files and files <= used and not files <= covered:
            entries.add(str(folder))
            covered |= files
    entries |= used - covered
    return sorted(entries)


def write(dvc_yaml: Path, root: Path = REPO) -> list[str]:
    """Rewrite each stage's library deps in ``dvc_yaml`` to its import closure, in place (a
    round-trip YAML edit: comments, order and every other dep kept). Returns the stages changed."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)  # dvc.yaml's own layout: "  - item"
    spec = rt.load(dvc_yaml.read_text())
    changed = []
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        deps = body.get("deps", [])
        script = next((d for d in deps if isinstance(d, str) and d.startswith("stages/")), None)
        if script is None:
            continue
        want = dvc_entries(import_closure(root / script, root), root)
        is_lib = [isinstance(d, str) and (d == LIB or d.startswith(LIB + "/")) for d in deps]
        have = [d for d, lib in zip(deps, is_lib, strict=True) if lib]
        if have == want:
            continue
        at = is_lib.index(True) if any(is_lib) else deps.index(script) + 1
        for i in reversed([i for i, lib in enumerate(is_lib) if lib]):
            del deps[i]
        for k, entry in enumerate(want):
            deps.insert(at + k, entry)
        changed.append(name)
    if changed:
        tmp = dvc_yaml.with_name(dvc_yaml.name + ".tmp")
        with tmp.open("w") as f:
            rt.dump(spec, f)
        tmp.replace(dvc_yaml)
    return changed


if __name__ == "__main__":  # python -m tests.deps [--write]: what each stage should list
    import sys

    if "--write" in sys.argv[1:]:
        done = write(REPO / "dvc.yaml")
        print(
            f"dvc.yaml: library deps rewritten for {', '.join(done)}"
            if done
            else "dvc.yaml: library deps already match the import closures"
        )
        sys.exit(0)
    for name, (script, listed) in stage_library_deps(REPO / "dvc.yaml").items():
        print(f"{name}:")
        for f in sorted(import_closure(REPO / script)) if script else []:
            print(f"  - {f}{'' if f in listed else '   # missing'}")
    for p in check(REPO / "dvc.yaml"):
        print("problem:", p)
