"""No import circles between bpnet's modules (issue 30), counting imports inside functions too: a lazy import
that closes a circle still ties two modules together. Run by ``make lint`` and by ``make test``."""

import ast
from pathlib import Path
from typing import Dict, List, Set

from .conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "bpnet"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> Dict[str, Set[str]]:
    """Module → the package's modules it imports anywhere in its file (``from pkg import module`` names the
    module; ``from pkg.module import name`` the module). Relative imports are resolved."""
    modules = {module_name(path, package.parent): path for path in package.rglob("*.py")}
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    root = package.name
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name and target.split(".")[0] == root:
                    graph[name].add(target)
    return graph


def import_circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    circles: List[List[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_the_circle_finder_finds_direct_and_longer_circles(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")  # lazy and relative
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from pkg import a\n")
    graph = import_graph(package)
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert import_circles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_bpnet_has_no_import_circles():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and graph["bpnet.cli"], "the import graph was not read"
    assert import_circles(graph) == []
