"""The shape of the package: imports go one way, `pruners` knows neither Optuna nor Ray, no module
grows past ~400 lines of code, and `import prunetune` stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "prunetune"

#: The rooms, lowest first: a module may import its own room and the rooms before it. The zoo
#: (models, datasets, checkpoints) sits on `pruners`: a pruned checkpoint is rebuilt by its plan.
ROOMS = ("pruners", "zoo", "objectives", "search", "results", "app", "cli")
#: Read by every room, importing none of them.
SHARED = ("errors", "files", "runtime", "user_code")
MAX_LINES_OF_CODE = 400


def room_of(module: str) -> str | None:
    """``prunetune.search.space`` -> "search"; None for the shared modules and the package itself."""
    parts = module.split(".")
    if parts[0] != "prunetune" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ROOMS else None


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts)
        found.append((name.removesuffix(".__init__"), path))
    return found


def imports(path: Path, name: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at the top or inside a function (lazy imports count too)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def lines_of_code(path: Path) -> int:
    """Lines that are neither blank, comments nor docstrings."""
    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return sum(
        1 for number, line in enumerate(source.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and number not in docstrings
    )


def test_imports_go_one_way() -> None:
    backward = []
    for name, path in modules():
        own = room_of(name)
        shared = name.split(".")[1] in SHARED if "." in name else False
        for line, target in imports(path, name):
            other = room_of(target)
            if other is None:
                continue
            if shared or (own is not None and ROOMS.index(other) > ROOMS.index(own)):
                backward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not backward, "imports against the one-way order:\n" + "\n".join(backward)


@pytest.mark.parametrize("room", ["pruners", "objectives"])
def test_pruners_and_objectives_never_import_optuna_or_ray(room: str) -> None:
    offending = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for name, path in modules() if room_of(name) == room
        for line, target in imports(path, name)
        if target.split(".")[0] in ("optuna", "ray", "pymoo") or target.startswith("scipy.optimize")
    ]
    assert not offending, "\n".join(offending)


def test_no_module_is_over_400_lines_of_code() -> None:
    large = {str(path.relative_to(PACKAGE.parent)): lines_of_code(path) for _, path in modules()}
    assert {name: count for name, count in large.items() if count > MAX_LINES_OF_CODE} == {}


def test_the_layout_test_sees_a_backward_import(tmp_path: Path) -> None:
    """The checks above would catch what they look for: a lazy backward import, by AST."""
    module = tmp_path / "space.py"
    module.write_text("def f():\n    from prunetune.app.runner import run_experiment\n")
    found = imports(module, "prunetune.search.space")
    assert found == [(2, "prunetune.app.runner")]
    assert ROOMS.index(room_of(found[0][1])) > ROOMS.index(room_of("prunetune.search.space"))


def test_import_prunetune_is_light() -> None:
    code = "import sys, prunetune; print(sorted(m for m in ('torch', 'optuna', 'ray', 'pandas', 'pymoo') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
