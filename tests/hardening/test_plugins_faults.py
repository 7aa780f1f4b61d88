"""Broken plugins, through the real ``graphnet`` command: each fault names the plugin, the op and
the node, exits 2 with one message on stderr and no traceback, and the core keeps working.

Every plugin here is a file written into tmp_path and loaded with ``--plugin`` or
``GRAPHNET_PLUGINS``, as a user's would be.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from graphnet.cli import main

# An op "bad_op" of shape x → x; each fault replaces one of its methods.
PLUGIN = textwrap.dedent('''
    import numpy as np
    from graphnet.hookspecs import hookimpl
    from graphnet.op import Op, Param

    class BadOp(Op):
        """An op that misbehaves on purpose."""
        name = "bad_op"

        def shape(self, shapes, attrs):
            return shapes[0]

        def forward(self, inputs, params, attrs, ctx):
            return inputs[0] * 2, None

        def backward(self, grad, saved, params, attrs, ctx):
            return [grad * 2], {{}}

    {fault}

    @hookimpl
    def graphnet_register_ops(registry):
        registry.add_op(BadOp)
''')

FAULTS = {
    "forward_shape": ("BadOp.forward = lambda self, inputs, params, attrs, ctx: "
                      "(inputs[0][:, :, :3], None)",
                      "node 's': forward returned 2×3×3 as the output: expected 2×3×4"),
    "backward_shape": ("BadOp.backward = lambda self, grad, saved, params, attrs, ctx: "
                       "([grad[:, :, :3]], {})",
                       "node 's': backward returned 2×3×3 as the gradient of input 1: "
                       "expected 2×3×4"),
    "forward_dtype": ("BadOp.forward = lambda self, inputs, params, attrs, ctx: "
                      "(inputs[0].astype(np.float16), None)",
                      "node 's': forward returned float16 as the output: expected float64"),
    "backward_dtype": ("BadOp.backward = lambda self, grad, saved, params, attrs, ctx: "
                       "([grad.astype(np.float32)], {})",
                       "node 's': backward returned float32 as the gradient of input 1"),
    "backward_count": ("BadOp.backward = lambda self, grad, saved, params, attrs, ctx: ([], {})",
                       "node 's': backward must return one gradient (or None) per input"),
    "backward_not_array": ("BadOp.backward = lambda self, grad, saved, params, attrs, ctx: "
                           "([grad.tolist()], {})",
                           "node 's': backward returned list as the gradient of input 1"),
    "forward_raises": ("def broken(self, inputs, params, attrs, ctx):\n"
                       "    raise ZeroDivisionError('oops in forward')\n"
                       "BadOp.forward = broken",
                       "while running forward of node 's' (op 'bad_op', plugin"),
    "shape_raises": ("BadOp.shape = lambda self, shapes, attrs: 1 / 0",
                     "node 's': shape inference of op 'bad_op' (plugin"),
    "params_raises": ("BadOp.params = lambda self, shapes, attrs: {'w': Param(shape='big')}",
                      "parameter 'w' has a bad shape"),
    "init_raises": ("BadOp.params = lambda self, shapes, attrs: "
                    "{'w': Param((2,), init=lambda rng, shape, dtype: np.zeros(5))}",
                    "node 's': init returned 5 as the parameter 'w': expected 2"),
    "constructor_raises": ("def __init__(self):\n"
                           "    raise RuntimeError('no way')\n"
                           "BadOp.__init__ = __init__",
                           "op 'bad_op' (plugin"),
}


def _spec(tmp_path, op="bad_op"):
    spec = {"inputs": {"x": {"shape": [3, 4]}, "t": {"shape": [3, 4]}},
            "nodes": [{"name": "s", "op": op, "inputs": ["x"]},
                      {"name": "loss", "op": "mse_loss", "inputs": ["s", "t"]}],
            "outputs": {"loss": "loss"}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _plugin(tmp_path, fault="", name="bad_plugin.py", template=PLUGIN):
    path = tmp_path / name
    path.write_text(template.format(fault=fault))
    return path


def _assert_clean_failure(status, err, *fragments):
    assert status == 2, err
    assert "Traceback" not in err
    assert err.startswith("error:") or "\nerror:" in err or "error:" in err.splitlines()[0]
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


@pytest.fixture
def run_main(capsys):
    """The CLI's entry point in-process (no interpreter start-up per case): (status, out, err).
    An exception escaping ``main`` fails the test, as a traceback would."""
    def run(*args):
        capsys.readouterr()
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err
    return run


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_misbehaving_op_is_named_through_the_cli(tmp_path, run_main, fault):
    code, expected = FAULTS[fault]
    plugin = _plugin(tmp_path, code)
    status, out, err = run_main("gradcheck", _spec(tmp_path), "--plugin", plugin)
    _assert_clean_failure(status, err, expected, "bad_op")
    assert str(plugin) in err  # the plugin is named by its file


def test_a_misbehaving_op_is_named_by_the_installed_command(tmp_path, graphnet_cmd):
    plugin = _plugin(tmp_path, FAULTS["backward_shape"][0])
    status, out, err = graphnet_cmd("gradcheck", _spec(tmp_path),
                                    env={"GRAPHNET_PLUGINS": str(plugin)})
    _assert_clean_failure(status, err, f"plugin '{plugin}', op 'bad_op', node 's': backward "
                          "returned 2×3×3 as the gradient of input 1: expected 2×3×4")


def test_a_plugin_that_fails_to_import_is_named_and_the_rest_works(tmp_path, graphnet_cmd,
                                                                   run_main, monkeypatch):
    broken = tmp_path / "explodes.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    status, out, err = graphnet_cmd("check", _spec(tmp_path, op="relu"), "--plugin", broken)
    # the rest works (the spec is checked), and the status says a named plugin was broken
    assert status == 2 and "ok" in out and "Traceback" not in err
    assert "exit status 2: 1 plugin problem (named above)" in err
    assert f"{broken}: plugin failed to import: RuntimeError: boom at import" in err
    monkeypatch.setenv("GRAPHNET_PLUGINS", str(broken))
    status, out, err = run_main("check", _spec(tmp_path))
    _assert_clean_failure(status, err, "boom at import", "unknown op 'bad_op'")


def test_a_plugin_that_raises_while_registering_is_named(tmp_path, run_main):
    plugin = _plugin(tmp_path, template=textwrap.dedent('''
        from graphnet.hookspecs import hookimpl

        @hookimpl
        def graphnet_register_ops(registry):
            raise KeyError("half-registered")
        {fault}
    '''))
    status, out, err = run_main("check", _spec(tmp_path), "--plugin", plugin)
    _assert_clean_failure(status, err, f"plugin '{plugin}' raised while registering: KeyError",
                          "unknown op 'bad_op'")
    status, out, err = run_main("check", _spec(tmp_path, op="relu"), "--plugin", plugin)
    assert status == 2 and "ok" in out  # the built-in ops keep working; the plugin is broken


@pytest.mark.parametrize("fault, expected", [
    ("BadOp.name = '1bad'", "'name' must be an identifier"),
    ("BadOp.attrs = {'k': 3}", "attribute 'k' must be an Attr"),
    ("del BadOp.backward", "does not define backward()"),
    ("BadOp.__doc__ = None", "has no docstring"),
    ("BadOp.arity = (3, 1)", "'arity' must be an int or (minimum, maximum)"),
])
def test_a_malformed_op_is_refused_at_registration(tmp_path, run_main, fault, expected):
    plugin = _plugin(tmp_path, fault)
    status, out, err = run_main("check", _spec(tmp_path), "--plugin", plugin)
    _assert_clean_failure(status, err, f"plugin '{plugin}'", expected)


def test_disabling_a_plugin_turns_it_off_without_importing_it(tmp_path, run_main, graphnet_cmd,
                                                              monkeypatch):
    first = _plugin(tmp_path, name="first.py")
    second = _plugin(tmp_path, name="second.py")
    spec = _spec(tmp_path)
    status, out, err = run_main("check", spec, "--plugin", first, "--plugin", second)
    _assert_clean_failure(status, err, "op 'bad_op' is registered by more than one plugin")
    status, out, err = run_main("check", spec, "--plugin", first, "--plugin", second,
                                "--disable-plugin", "second")
    assert status == 0 and "error" not in err, err
    # A disabled plugin is not even imported: its import-time code never runs.
    (tmp_path / "noisy.py").write_text("raise SystemExit('imported!')\n")
    status, out, err = run_main("check", _spec(tmp_path, op="relu"), "--plugin",
                                tmp_path / "noisy.py", "--disable-plugin", "noisy")
    assert status == 0 and "imported" not in err
    status, out, err = graphnet_cmd("check", spec, "--plugin", first, "--plugin", second,
                                    env={"GRAPHNET_DISABLE_PLUGINS": f"{first}"})
    assert status == 0 and "error" not in err, err
    # Built-ins can be turned off too; what needs them then fails clearly.
    monkeypatch.setenv("GRAPHNET_DISABLE_PLUGINS", "activations")
    status, out, err = run_main("check", _spec(tmp_path, op="relu"))
    _assert_clean_failure(status, err, "unknown op 'relu'")


def test_a_missing_plugin_file_is_named(tmp_path, run_main):
    status, out, err = run_main("check", _spec(tmp_path), "--plugin", tmp_path / "nope.py")
    _assert_clean_failure(status, err, "nope.py: plugin file not found", "unknown op 'bad_op'")


def test_a_plugin_calling_sys_exit_does_not_end_graphnet(tmp_path, graphnet_cmd):
    at_import = tmp_path / "quits.py"
    at_import.write_text("import sys\nsys.exit('bye from the plugin')\n")
    while_registering = _plugin(tmp_path, name="quits_later.py", template=textwrap.dedent('''
        import sys
        from graphnet.hookspecs import hookimpl

        @hookimpl
        def graphnet_register_ops(registry):
            sys.exit(3)
        {fault}
    '''))
    status, out, err = graphnet_cmd("check", _spec(tmp_path, op="relu"), "--plugin", at_import,
                                    "--plugin", while_registering)
    assert status == 2 and "ok" in out, err
    assert "plugin failed to import: SystemExit: bye from the plugin" in err
    assert f"plugin '{while_registering}' raised while registering: SystemExit" in err


@pytest.mark.parametrize("name, text, message", [
    ("nothere.py", None, "plugin file not found"),
    ("syntax.py", "def broken(:\n", "plugin failed to import: SyntaxError"),
])
def test_a_mistyped_or_broken_plugin_file_fails_the_command(tmp_path, graphnet_cmd, name, text,
                                                           message):
    """A CI script that names a plugin must not pass when the plugin is not there."""
    plugin = tmp_path / "wrong" / name
    if text is not None:
        plugin.parent.mkdir()
        plugin.write_text(text)
    lenet = Path(__file__).resolve().parents[2] / "specs" / "lenet5.toml"
    for how in (("--plugin", plugin), ):
        status, out, err = graphnet_cmd("check", lenet, *how)
        assert status == 2 and message in err and "Traceback" not in err, err
    status, out, err = graphnet_cmd("check", lenet, env={"GRAPHNET_PLUGINS": str(plugin)})
    assert status == 2 and message in err, err
    status, out, err = graphnet_cmd("check", lenet, "--plugin", plugin, "--disable-plugin",
                                    plugin.stem)
    assert status == 0, err
