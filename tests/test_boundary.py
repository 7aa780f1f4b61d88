"""The op-call boundary: every call into an op is timed, checked and has its failures named."""
import numpy as np
import pytest

import graphnet
from graphnet.errors import DataError, PluginError, plugin_failure

CONV_NET = {"inputs": {"x": {"shape": [8, 12, 12]}, "label": {"shape": [], "dtype": "int64"}},
            "nodes": [{"name": "conv", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1,
                       "inputs": ["x"]},
                      {"name": "relu", "op": "relu"},
                      {"name": "fc", "op": "dense", "units": 3},
                      {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}],
            "outputs": {"loss": "loss"}}


def test_profile_is_told_each_calls_time_by_node_a_fused_one_by_its_producer():
    network = graphnet.Network(graphnet.load(CONV_NET))
    calls = []
    feeds = {"x": np.ones((2, 8, 12, 12)), "label": np.array([0, 2])}
    network.forward(feeds, training=True, profile=lambda *call: calls.append(call))
    network.backward(profile=lambda *call: calls.append(call))
    assert [(node, method) for node, method, _ in calls] == [
        ("conv", "forward"), ("fc", "forward"), ("loss", "forward"),
        ("loss", "backward"), ("fc", "backward"), ("conv", "backward")]
    assert all(seconds >= 0 for _, _, seconds in calls)


def test_a_forward_that_returns_no_pair_is_named(tmp_path):
    plugin = tmp_path / "bare.py"
    plugin.write_text(
        "from graphnet.hookspecs import hookimpl\nfrom graphnet.op import Op\n"
        "class Bare(Op):\n    '''Forgets to return what backward needs.'''\n    name = 'bare'\n"
        "    def shape(self, s, a):\n        return s[0]\n"
        "    def forward(self, xs, p, a, ctx):\n        return xs[0]\n"
        "    def backward(self, g, saved, p, a, ctx):\n        return [g], {}\n"
        "@hookimpl\ndef graphnet_register_ops(registry):\n    registry.add_op(Bare)\n")
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}}, "nodes": [{"name": "b", "op": "bare"}]},
                          plugins=[plugin])
    with pytest.raises(PluginError) as caught:
        graphnet.Network(graph).forward({"x": np.ones((2, 3))})
    assert "op 'bare', node 'b': forward must return (output, saved)" in str(caught.value)


def test_plugin_failure_keeps_graphnets_own_errors_and_names_the_rest():
    own = plugin_failure(DataError("bad labels"), "dataset 'd' (plugin 'p') failed to load",
                         located={"node": "n"})
    assert isinstance(own, DataError) and own.node == "n" and own.message == "bad labels"
    memory = MemoryError()
    assert plugin_failure(memory, "anything") is memory
    crash = KeyError("k")
    failure = plugin_failure(crash, "dataset 'd' (plugin 'p') failed to load", field="dataset")
    assert isinstance(failure, PluginError) and failure.__cause__ is crash
    assert str(failure) == "field 'dataset': dataset 'd' (plugin 'p') failed to load: KeyError: 'k'"


def test_a_plugin_failing_in_gradchecks_per_node_check_is_named(tmp_path):
    # gradcheck also runs each node's backward on its own, with no parameter gradient wanted:
    # a bug on that path alone is named like one in the network's own backward.
    plugin = tmp_path / "frozen_bug.py"
    plugin.write_text(
        "from graphnet.hookspecs import hookimpl\nfrom graphnet.op import Op, Param\n"
        "class Shift(Op):\n    '''Adds a learned offset.'''\n    name = 'shift'\n"
        "    def shape(self, s, a):\n        return s[0]\n"
        "    def params(self, s, a):\n        return {'offset': Param(s[0])}\n"
        "    def forward(self, xs, p, a, ctx):\n        return xs[0] + p['offset'], None\n"
        "    def backward(self, g, saved, p, a, ctx):\n"
        "        if not ctx.needs_param_grad:\n            raise KeyError('frozen path')\n"
        "        return [g], {'offset': g.sum(axis=0)}\n"
        "@hookimpl\ndef graphnet_register_ops(registry):\n    registry.add_op(Shift)\n")
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}},
                           "nodes": [{"name": "s", "op": "shift"}]}, plugins=[plugin])
    from graphnet.gradcheck import gradcheck
    with pytest.raises(PluginError) as caught:
        gradcheck(graph)
    assert "while running backward of node 's' (op 'shift', plugin" in str(caught.value)
    assert "KeyError: 'frozen path'" in str(caught.value)


def test_a_failing_initialiser_is_named_with_its_parameter(tmp_path):
    plugin = tmp_path / "bad_init.py"
    plugin.write_text(
        "from graphnet.hookspecs import hookimpl\nfrom graphnet.op import Op, Param\n"
        "def broken(rng, shape, dtype):\n    raise ValueError('no numbers today')\n"
        "class Shift(Op):\n    '''Adds a learned offset.'''\n    name = 'shift'\n"
        "    def shape(self, s, a):\n        return s[0]\n"
        "    def params(self, s, a):\n        return {'offset': Param(s[0], init=broken)}\n"
        "    def forward(self, xs, p, a, ctx):\n        return xs[0] + p['offset'], None\n"
        "    def backward(self, g, saved, p, a, ctx):\n        return [g], {'offset': g.sum(0)}\n"
        "@hookimpl\ndef graphnet_register_ops(registry):\n    registry.add_op(Shift)\n")
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}},
                           "nodes": [{"name": "s", "op": "shift"}]}, plugins=[plugin])
    with pytest.raises(PluginError) as caught:
        graphnet.Network(graph)
    assert "while running init of parameter 'offset' of node 's' (op 'shift', plugin" in \
        str(caught.value)
    assert "ValueError: no numbers today" in str(caught.value)
