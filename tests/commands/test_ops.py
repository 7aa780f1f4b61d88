"""``graphnet ops``: the catalogue of every registered op (built-in and from a user's plugin
file) and one op in full."""
from __future__ import annotations

import json
import re
import textwrap

from graphnet.registry import build_registry

USER_PLUGIN = textwrap.dedent('''
    """A user's plugin file with one op."""
    from graphnet.hookspecs import hookimpl
    from graphnet.op import Attr, Op


    class Triple(Op):
        """Multiply by three, or by a factor given in the spec.

        A longer description that only the full view shows.
        """

        name = "triple"
        attrs = {"factor": Attr("float", default=3.0, minimum=0.0, doc="the multiplier"),
                 "mode": Attr("str", default="plain", choices=("plain", "fancy"),
                              doc="how to multiply")}

        def shape(self, input_shapes, attrs):
            return input_shapes[0]

        def forward(self, inputs, params, attrs, ctx):
            return inputs[0] * attrs.factor, None

        def backward(self, grad_output, saved, params, attrs, ctx):
            return [grad_output * attrs.factor], {}


    @hookimpl
    def graphnet_register_ops(registry):
        registry.add_op(Triple)
''')


def test_catalogue_lists_every_registered_op(run_cli):
    status, out, err = run_cli("ops")
    assert status == 0
    for name in build_registry().names("op"):
        assert name in out
    assert "builtin:conv" in out and "filters (int)" in out and "2-D convolution" in out


def test_catalogue_includes_an_op_from_a_plugin_file(run_cli, tmp_path):
    plugin = tmp_path / "triple_plugin.py"
    plugin.write_text(USER_PLUGIN)
    status, out, err = run_cli("ops", "--plugin", plugin)
    assert status == 0, err
    assert "triple" in out and "Multiply by three" in out and "factor 3.0" in out
    assert str(plugin) in re.sub(r"\s+", "", out)  # a long path may wrap in its column
    status, out, _ = run_cli("ops", "--plugin", plugin, "--format", "json")
    entry = next(op for op in json.loads(out) if op["name"] == "triple")
    assert entry["plugin"] == str(plugin) and entry["has_params"] is False


def test_one_op_in_full(run_cli, tmp_path):
    status, out, _ = run_cli("ops", "conv2d")
    assert status == 0
    for text in ("conv2d", "builtin:conv", "filters", "kernel", "dilation", "groups", "required",
                 "1 input", "learned: weight, bias", "[height, width]", "he_uniform", "PyTorch"):
        assert text in out, text
    plugin = tmp_path / "triple_plugin.py"
    plugin.write_text(USER_PLUGIN)
    status, out, _ = run_cli("ops", "triple", "--plugin", plugin)
    assert status == 0
    for text in ("factor", ">= 0", "'plain', 'fancy'", "only the full view shows", "none"):
        assert text in out, text


def test_one_op_as_json(run_cli):
    status, out, _ = run_cli("ops", "max_pool2d", "--format", "json")
    detail = json.loads(out)
    assert detail["name"] == "max_pool2d" and detail["arity"] == [1, 1]
    assert {a["name"] for a in detail["attributes"]} >= {"kernel", "stride", "padding"}


def test_unknown_op_suggests_the_closest(run_cli):
    status, out, err = run_cli("ops", "conv")
    assert status == 2
    assert "unknown op 'conv'" in err and "did you mean 'conv2d'" in err


SWISH_PLUGIN = textwrap.dedent('''
    """An op that overrides params() but creates none."""
    import numpy as np
    from graphnet.hookspecs import hookimpl
    from graphnet.op import Op


    class Swish(Op):
        """x·sigmoid(x)."""

        name = "swish"

        def shape(self, input_shapes, attrs):
            return input_shapes[0]

        def params(self, input_shapes, attrs):
            return {}

        def forward(self, inputs, params, attrs, ctx):
            s = 1 / (1 + np.exp(-inputs[0]))
            return inputs[0] * s, (inputs[0], s)

        def backward(self, grad_output, saved, params, attrs, ctx):
            x, s = saved
            return [grad_output * (s + x * s * (1 - s))], {}


    @hookimpl
    def graphnet_register_ops(registry):
        registry.add_op(Swish)
''')


def test_an_op_whose_params_are_empty_has_none_and_state_is_told_apart(tmp_path, run_cli):
    plugin = tmp_path / "swish.py"
    plugin.write_text(SWISH_PLUGIN)
    status, out, _ = run_cli("ops", "swish", "--plugin", plugin)
    assert status == 0
    assert re.search(r"parameters\s+none", out) and "learned" not in out
    status, out, _ = run_cli("ops", "batch_norm")
    flat = " ".join(out.split())
    assert "learned: weight, bias; state, not learned: running_mean, running_var" in flat
    status, out, _ = run_cli("ops", "--format", "json")
    ops = {op["name"]: op for op in json.loads(out)}
    assert ops["relu"]["has_params"] is False
    assert ops["batch_norm"]["state"] == ["running_mean", "running_var"]
    assert ops["conv2d"]["learned"] == ["weight", "bias"] and ops["dense"]["state"] == []
