"""The house plan: graphnet's imports point one way, down the layers, and form no cycle.

Every module of ``graphnet`` and of the built-in plugins (``plugins/``, installed as
``graphnet_plugins``) is parsed with ``ast``; every import of a project module counts, the
ones inside functions too (a lazy import is still an arrow). A module may import modules of its
own layer (without a cycle) and of the layers below it, never of a layer above.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"graphnet": ROOT / "graphnet", "graphnet_plugins": ROOT / "plugins"}

LAYERS = [  # top first; a module, or a package that covers the modules inside it
    ("cli", ["graphnet.cli"]),
    ("commands", ["graphnet.commands"]),
    ("render", ["graphnet.render"]),
    ("train", ["graphnet.train", "graphnet.bench", "graphnet.export", "graphnet.testing",
               "graphnet.gradcheck"]),
    ("training parts", ["graphnet.training", "graphnet.distributed", "graphnet.train_config",
                        "graphnet.inference",
                        "graphnet.inspection", "graphnet.schema", "graphnet.checks",
                        "graphnet.optim", "graphnet.options", "graphnet.data", "graphnet.stack",
                        "graphnet.onnx_import", "graphnet_plugins"]),
    ("engine", ["graphnet.engine", "graphnet.boundary", "graphnet.runtime", "graphnet.checkpoint",
                "graphnet.checkpoint_check", "graphnet.parallel", "graphnet.blas",
                "graphnet.allocator"]),
    ("graph", ["graphnet.graph", "graphnet.analysis", "graphnet.fusion", "graphnet.limits"]),
    ("registry", ["graphnet.registry"]),
    ("spec", ["graphnet.spec", "graphnet.blocks"]),
    ("hookspecs/op/errors", ["graphnet.hookspecs", "graphnet.op", "graphnet.errors",
                             "graphnet.text", "graphnet.files", "graphnet.numeric",
                             # graphnet/__init__.py alone: it imports nothing until a name is
                             # asked for (the modules inside graphnet each need an entry)
                             "graphnet"]),
]

ALLOWED_UPWARD = {
    # (importer, imported): why this arrow may run up the layers
    ("graphnet.registry", "graphnet_plugins"):
        "the registry loads the built-in plugins, by name, exactly as it loads a user's plugin",
}


def module_files() -> dict[str, Path]:
    files = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


MODULES = module_files()


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest entry that names ``module`` or a package above it."""
    best = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or (module.startswith(name + ".") and name != "graphnet"):
                if best is None or len(name) > len(best[1]):
                    best = (index, name)
    if best is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/test_layers.py, "
                             "at the lowest layer whose modules it may import")
    return best[0]


def imports_of(module: str) -> list[tuple[str, int]]:
    """(project module imported, line) for every import statement in ``module``."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found = []
    for statement in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(statement, ast.Import):
            targets = [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom):
            base = statement.module or ""
            if statement.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - (statement.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from package import name`` imports the submodule when there is one
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in statement.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # ``import a.b.c`` of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != module:
                found.append((target, statement.lineno))
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_runs_up_the_layers():
    upward = []
    for module, imports in GRAPH.items():
        for target, line in imports:
            if layer_of(target) < layer_of(module) and (module, target) not in ALLOWED_UPWARD:
                upward.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {module} "
                              f"({LAYERS[layer_of(module)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_every_allowed_upward_import_still_exists():
    for module, target in ALLOWED_UPWARD:
        assert target in {t for t, _ in GRAPH[module]}, \
            f"{module} no longer imports {target}: drop it from ALLOWED_UPWARD"


def test_the_imports_form_no_cycle():
    edges = {module: sorted({t for t, _ in imports}) for module, imports in GRAPH.items()}
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in edges[module]:
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_the_checker_sees_lazy_and_relative_imports():
    """The parser itself: an import inside a function and a relative import both count."""
    assert ("graphnet.errors", ) <= tuple(t for t, _ in GRAPH["graphnet.op"])
    lazy = {t for t, _ in GRAPH["graphnet.registry"]}
    assert "graphnet_plugins" in lazy  # imported inside a function, by absolute name
    assert layer_of("graphnet.render.training") == layer_of("graphnet.render")
    with pytest.raises(AssertionError, match="has no layer"):
        layer_of("graphnet.new_module")


def test_the_package_imports_nothing_until_a_name_is_asked_for():
    assert GRAPH["graphnet"] == []


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    return set(output.split())


def test_an_op_module_loads_only_what_an_op_needs():
    loaded = loaded_after("import graphnet.op")
    ours = {name for name in loaded if name.split(".")[0] in PACKAGES}
    assert ours == {"graphnet", "graphnet.errors", "graphnet.op"}
    assert "numpy" in loaded
    assert not {"networkx", "pluggy", "rich", "torch"} & {n.split(".")[0] for n in loaded}


def test_names_of_the_package_load_on_first_use():
    import graphnet

    assert set(graphnet.__all__) <= set(dir(graphnet))
    for name in graphnet.__all__:
        assert getattr(graphnet, name) is not None, name
    assert isinstance(graphnet.train, types.ModuleType) and callable(graphnet.train.train)
    from graphnet import Network, TrainConfig, load  # the usual spelling
    assert (Network, TrainConfig, load) == (graphnet.engine.Network, graphnet.train.TrainConfig,
                                            graphnet.graph.load)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        graphnet.nonexistent  # noqa: B018
