"""Imports run one way: no module of the package imports, at its top or inside a function, a
module that imports it back (directly or through others); and the layers below the
configuration (ops, layers, model, data, trainer, distributed) never import ``config``,
``quick_start`` or ``cli``: they receive what they need."""

import ast
from pathlib import Path

import recbole_mamba

PACKAGE = Path(recbole_mamba.__file__).parent
BELOW_CONFIG = ("ops", "layers", "model", "data", "trainer", "distributed")
ABOVE = ("recbole_mamba.config", "recbole_mamba.quick_start", "recbole_mamba.cli")


def module_names():
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("recbole_mamba",) + path.relative_to(PACKAGE).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path, name, modules):
    """The package's modules that ``path`` imports anywhere in it."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules.keys()
            out.update(submodules)
            if len(submodules) < len(node.names):  # a name defined in ``base`` itself
                out.add(base)
    return {target for target in out if target in modules and target != name}


def import_graph():
    modules = module_names()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "recbole_mamba.serve.session" in graph["recbole_mamba.serve.recommender"]
    assert "recbole_mamba.trainer.all_positions" in graph["recbole_mamba.config"]  # inside a method
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_lower_layers_do_not_import_the_configuration():
    wrong = [f"{name} imports {target}" for name, targets in import_graph().items()
             if name.split(".")[1:2] and name.split(".")[1] in BELOW_CONFIG
             for target in sorted(targets) if target in ABOVE]
    assert wrong == []
