"""No import cycles in src/mailroom: between modules, nor between its top-level packages.

Every import statement counts, wherever it is: at the top, inside a function (a lazy
import is still a dependency, and the usual way a cycle hides) or under TYPE_CHECKING.
A top-level package is ``mailroom.X`` with everything under it (``mailroom.emails``);
a module directly under ``mailroom`` (``mailroom.settings``) is a unit of its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import mailroom

SOURCE = Path(mailroom.__file__).parent
Graph = Mapping[str, Iterable[str]]


def _modules(root: Path) -> dict[str, Path]:
    """Dotted name → file, for every module under ``root`` (migrations aside)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if "migrations" in parts:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path) -> set[str]:
    """Every dotted name an import statement in ``path`` may load (modules and attributes)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the modules of the same tree it imports."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported(module, path):
            # `from a.b import c` loads a.b.c if that is a module, else a.b.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def top_level(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_graph(graph: Graph) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = top_level(module)
        packages.setdefault(source, set()).update(
            top_level(t) for t in targets if top_level(t) != source
        )
    return packages


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle as the path walked (first and last the same), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        branches = [iter(sorted(graph.get(start, ())))]
        while branches:
            step = next(branches[-1], None)
            if step is None:  # every way out of path[-1] is explored: no cycle through it
                done.add(path.pop())
                branches.pop()
            elif step in path:
                return [*path[path.index(step) :], step]
            elif step not in done:
                path.append(step)
                branches.append(iter(sorted(graph.get(step, ()))))
    return None


def _describe(cycle: list[str] | None) -> str:
    return "no cycle" if cycle is None else " -> ".join(cycle)


# -- the checker itself -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        pytest.param({"a": {"b"}, "b": {"c"}, "c": set()}, None, id="chain"),
        pytest.param({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, None, id="diamond"),
        pytest.param({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"], id="two"),
        pytest.param({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"], id="behind-a-chain"),
        pytest.param({"x": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    assert find_cycle(graph) == expected


def test_it_sees_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""The package."""\n')
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "one.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.two import Thing\n"
        "def later():\n    from . import three\n"
    )
    (package / "sub" / "three.py").write_text("import os\n")
    (package / "two.py").write_text("from pkg.sub.one import later\n")

    graph = import_graph(package)

    assert graph["pkg.sub.one"] == {"pkg.two", "pkg.sub", "pkg.sub.three"}
    assert graph["pkg.two"] == {"pkg.sub.one"}
    assert find_cycle(graph) == ["pkg.sub.one", "pkg.two", "pkg.sub.one"]
    assert package_graph(graph)["pkg.two"] == {"pkg.sub"}
    assert find_cycle(package_graph(graph)) == ["pkg.sub", "pkg.two", "pkg.sub"]


def test_it_reads_the_real_tree() -> None:
    graph = import_graph(SOURCE)
    assert len(graph) > 50
    assert "mailroom.settings" in graph["mailroom.db.engine"]
    assert "mailroom.cli.main" in graph["mailroom.cli"]


# -- the project -----------------------------------------------------------------------


def test_no_module_imports_itself_back() -> None:
    cycle = find_cycle(import_graph(SOURCE))
    assert cycle is None, f"import cycle between modules: {_describe(cycle)}"


def test_no_two_top_level_packages_import_each_other() -> None:
    cycle = find_cycle(package_graph(import_graph(SOURCE)))
    assert cycle is None, f"import cycle between packages: {_describe(cycle)}"
