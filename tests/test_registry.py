"""Plugins: built-ins, files named by the user, entry points, and broken plugins."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from graphnet.registry import build_registry, load_plugin_file

ROOT = Path(__file__).resolve().parent.parent
PRELU = ROOT / "plugins" / "examples" / "prelu.py"

OP_TEMPLATE = textwrap.dedent('''
    from graphnet.hookspecs import hookimpl
    from graphnet.op import Op

    SEEN = {{}}  # what the hook saw, for the tests of call order

    class {cls}(Op):
        """{doc}"""
        name = "{name}"
        def shape(self, shapes, attrs):
            return shapes[0]
        def forward(self, inputs, params, attrs, ctx):
            return inputs[0], None
        def backward(self, grad, saved, params, attrs, ctx):
            return [grad], {{}}

    {hook}
''')
REGISTER = '''
    @hookimpl
    def graphnet_register_ops(registry):
        registry.add_op(Custom)
'''


def write_plugin(folder: Path, file_name: str, op_name: str, doc: str = "An op.",
                 hook: str = REGISTER) -> Path:
    path = folder / file_name
    path.write_text(OP_TEMPLATE.format(cls="Custom", name=op_name, doc=doc,
                                       hook=textwrap.dedent(hook)))
    return path


def test_every_builtin_registers_cleanly():
    registry = build_registry(environment=False)
    assert registry.problems == []
    for op in ("conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool", "relu", "leaky_relu",
               "sigmoid", "tanh", "flatten", "dense", "dropout", "batch_norm", "add", "concat",
               "softmax", "mse_loss", "softmax_cross_entropy"):
        assert registry.plugin_of("op", op).startswith("builtin:")


def test_plugin_from_a_file():
    registry = build_registry([PRELU], environment=False)
    assert registry.plugin_of("op", "prelu") == str(PRELU)


def test_plugin_from_the_environment(monkeypatch, tmp_path):
    plugin = write_plugin(tmp_path, "envop.py", "env_op")
    monkeypatch.setenv("GRAPHNET_PLUGINS", str(plugin))
    assert "env_op" in build_registry().names("op")


def test_a_plugin_that_fails_to_import_is_named_and_the_rest_work(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    registry = build_registry([broken], environment=False)
    assert any("broken.py" in str(p) and "boom" in str(p) for p in registry.problems)
    assert "conv2d" in registry.names("op")


def test_a_badly_defined_op_is_named(tmp_path):
    plugin = write_plugin(tmp_path, "nodoc.py", "nodoc_op", doc="")
    plugin.write_text(plugin.read_text().replace('""""""', ""))
    registry = build_registry([plugin], environment=False)
    assert any("op 'nodoc_op'" in str(p) and "docstring" in str(p) for p in registry.problems)
    assert "nodoc_op" not in registry.names("op")


def test_two_plugins_registering_one_name_is_an_error_naming_both(tmp_path):
    first = write_plugin(tmp_path, "first.py", "twin")
    second = write_plugin(tmp_path, "second.py", "twin")
    registry = build_registry([first, second], environment=False)
    problem = next(str(p) for p in registry.problems if "twin" in str(p))
    assert "first.py" in problem and "second.py" in problem
    with pytest.raises(Exception, match="more than one plugin"):
        registry.op("twin")


def test_disabling_a_plugin(tmp_path):
    plugin = write_plugin(tmp_path, "extra.py", "extra_op")
    registry = build_registry([plugin], environment=False, disabled={"extra"})
    assert "extra_op" not in registry.names("op")


def test_plugin_from_an_entry_point(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    write_plugin(site, "my_layers.py", "entry_op", doc="Registered through an entry point.")
    dist = site / "my_layers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-layers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[graphnet.plugins]\nmy_layers = my_layers\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run([sys.executable, "-m", "graphnet.cli", "ops", "entry_op"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "entry_op" in result.stdout and "Registered through an entry point." in result.stdout
    code = ("from graphnet.registry import build_registry; r = build_registry(); "
            "print(r.plugin_of('op', 'entry_op'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "my_layers"


# Hooks are called through pluggy's hook caller: a plugin's tryfirst and wrapper implementations
# work as pluggy documents them. Each plugin records what it saw in its module's SEEN.
def ordered_plugin(folder: Path, stem: str, hook: str):
    path = write_plugin(folder, f"{stem}.py", f"{stem}_op", hook=hook)
    return path, load_plugin_file(path)  # the module build_registry will use


def test_a_tryfirst_implementation_runs_before_every_other(tmp_path):
    first, first_module = ordered_plugin(tmp_path, "early", '''
        @hookimpl(tryfirst=True)
        def graphnet_register_ops(registry):
            SEEN["ops before"] = registry.names("op")
            registry.add_op(Custom)
    ''')
    plain, plain_module = ordered_plugin(tmp_path, "plain", '''
        @hookimpl
        def graphnet_register_ops(registry):
            SEEN["ops before"] = registry.names("op")
            registry.add_op(Custom)
    ''')
    registry = build_registry([plain, first], environment=False)
    assert registry.problems == []
    assert first_module.SEEN["ops before"] == []
    assert "conv2d" in plain_module.SEEN["ops before"]  # files run after the built-ins
    assert "early_op" in plain_module.SEEN["ops before"]
    assert registry.plugin_of("op", "early_op") == str(first)


@pytest.mark.parametrize("style", ["hookwrapper", "wrapper"])
def test_a_wrapper_runs_around_every_other_implementation(tmp_path, style):
    wrapping, module = ordered_plugin(tmp_path, "wrapping", f'''
        @hookimpl({style}=True)
        def graphnet_register_ops(registry):
            SEEN["ops before"] = registry.names("op")
            result = yield
            SEEN["ops after"] = registry.names("op")
            registry.add_op(Custom)  # registered after everyone, and still named as its own
            return result
    ''')
    later = write_plugin(tmp_path, "later.py", "later_op")
    registry = build_registry([wrapping, later], environment=False)
    assert registry.problems == []
    assert module.SEEN["ops before"] == []
    assert {"conv2d", "later_op"} <= set(module.SEEN["ops after"])
    assert registry.plugin_of("op", "wrapping_op") == str(wrapping)
    assert registry.plugin_of("op", "later_op") == str(later)


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_wrapper_that_raises_is_named_and_the_rest_work(tmp_path, where):
    raising = "raise RuntimeError('wrapper broke')"
    broken, _ = ordered_plugin(tmp_path, "broken_wrapper", f'''
        @hookimpl(wrapper=True)
        def graphnet_register_ops(registry):
            {raising if where == "before" else "pass"}
            result = yield
            {raising if where == "after" else "pass"}
            return result
    ''')
    other = write_plugin(tmp_path, "other.py", "other_op")
    registry = build_registry([broken, other], environment=False)
    assert [str(p) for p in registry.problems] == [
        f"plugin {str(broken)!r} raised while registering: RuntimeError: wrapper broke"]
    assert {"conv2d", "other_op"} <= set(registry.names("op"))


def test_an_implementation_that_raises_is_named_and_the_plugins_after_it_work(tmp_path):
    broken, _ = ordered_plugin(tmp_path, "raising", '''
        @hookimpl
        def graphnet_register_ops(registry):
            registry.add_op(Custom)
            raise KeyError("half-way")
    ''')
    after = write_plugin(tmp_path, "after.py", "after_op")
    registry = build_registry([broken, after], environment=False)
    assert any(str(broken) in str(p) and "KeyError" in str(p) for p in registry.problems)
    assert {"conv2d", "raising_op", "after_op"} <= set(registry.names("op"))
