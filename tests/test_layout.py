"""The package layout's rules (DESIGN §2), read from the source with ``ast``.

* imports point down: no import cycle between gpusim's modules;
* the library never imports the command line (``gpusim.cli``);
* no module is over 500 lines.

The graph counts every import statement wherever it stands (module level or inside a
function), except those under ``if TYPE_CHECKING:``. ``import gpusim.a.b`` and
``from gpusim.a import b`` (``b`` a submodule) are edges to ``gpusim.a.b``; ``from gpusim.a
import name`` is an edge to ``gpusim.a`` (so ``from gpusim import __version__`` is an edge to the
package ``gpusim``). The parent packages that Python runs on the way are not edges. Imports by a
name in a string (``importlib.import_module``) are not seen: that is how the sweep registry
loads the capabilities' tasks without depending on them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gpusim"
MAX_LINES = 500
CLI = "gpusim.cli"
CLI_ALLOWED = ("gpusim.cli", "gpusim.__main__")   # modules that may import the CLI


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """``{dotted name: path}`` of every module of the package."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Collects ``(line, target module)`` of every import of a package module."""

    def __init__(self, name: str, is_package: bool, known: set[str]):
        self.package = name if is_package else name.rpartition(".")[0]
        self.known = known
        self.found: list[tuple[int, str]] = []

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            for child in node.body:
                self.visit(child)
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in self.known:
                self.found.append((node.lineno, alias.name))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parent = self.package.split(".")
            parent = parent[:len(parent) - (node.level - 1)]
            base = ".".join(parent + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in self.known:
                self.found.append((node.lineno, sub))
            elif base in self.known:
                self.found.append((node.lineno, base))


def import_graph() -> dict[str, list[tuple[int, str]]]:
    """``{module: [(line, imported module), ...]}`` of the imports between gpusim's modules."""
    mods = _modules()
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        v = _Imports(name, path.name == "__init__.py", known)
        v.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        graph[name] = [(line, t) for line, t in v.found if t != name]
    return graph


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted (Tarjan's
    algorithm, iterative): every import cycle lies inside one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return sorted(comps)


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle (``[a, b, ..., a]``) per strongly connected component."""
    return [_cycle_in(c, edges) for c in strongly_connected(edges)]


def _cycle_in(comp: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (BFS)."""
    members, start = set(comp), comp[0]
    prev: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in members:
                continue
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return [*reversed(path), start]
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return comp


# ----------------------------------------------------------------------------- the checks
def test_graph_sees_function_level_and_relative_imports():
    g = import_graph()
    # sweep/api.py imports the task registry at module level
    assert "gpusim.sweep.tasks" in {t for _, t in g["gpusim.sweep.api"]}
    # the CLI's dispatcher imports its sub-command modules inside a function
    assert "gpusim.cli.backtest" in {t for _, t in g["gpusim.cli.main"]}


def test_find_cycles_reports_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert find_cycles(edges) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    edges = {m: {t for _, t in ts} for m, ts in import_graph().items()}
    comps = strongly_connected(edges)
    report = [f"{' -> '.join(_cycle_in(c, edges))}  (modules in a cycle together: "
              f"{', '.join(c)})" for c in comps]
    assert not comps, "import cycles:\n" + "\n".join(report)


def test_library_never_imports_the_cli():
    bad = [f"{m} (line {line}) imports {t}"
           for m, ts in import_graph().items()
           if not any(m == a or m.startswith(a + ".") for a in CLI_ALLOWED)
           for line, t in ts if t == CLI or t.startswith(CLI + ".")]
    assert not bad, "library modules import the command line:\n" + "\n".join(bad)


def test_no_module_over_500_lines():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in _modules().items()}
    big = sorted((n, m) for m, n in sizes.items() if n > MAX_LINES)
    assert not big, f"modules over {MAX_LINES} lines: " + ", ".join(f"{m} ({n})" for n, m in big)


def test_capabilities_register_their_sweep_tasks_on_demand():
    """sweep/tasks.py imports no capability; each built-in task lives in its capability's
    task.py and is imported by name when a sweep asks for it."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gpusim.sweep.tasks import PROVIDERS, available_tasks, get_task\n"
        "assert not [m for m in sys.modules if m.endswith('.task')], sys.modules\n"
        "r = get_task('backtest')\n"
        "assert type(r).__module__ == 'gpusim.backtest.task' and 'gpusim.search.task' not in "
        "sys.modules\n"
        "names = available_tasks()\n"
        "assert {'backtest', 'search', 'walkforward'} <= set(names), names\n"
        "for n in names:\n"
        "    if n in PROVIDERS:\n"
        "        assert type(get_task(n)).__module__ == PROVIDERS[n][0] == f'gpusim.{n}.task'\n"
        "print('ok')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]
