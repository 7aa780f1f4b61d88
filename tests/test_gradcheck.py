"""gradcheck catches wrong gradients, tolerates kinks and exactly-zero gradients, exits 0/1."""
import pytest

import graphnet
from graphnet.gradcheck import gradcheck

WRONG_PLUGIN = '''
import numpy as np
from graphnet.hookspecs import hookimpl
from graphnet.op import Op

class Cube(Op):
    """x³ with a backward that is {factor}× too large."""
    name = "cube"
    def shape(self, shapes, attrs):
        return shapes[0]
    def forward(self, inputs, params, attrs, ctx):
        return inputs[0] ** 3, inputs[0]
    def backward(self, grad, x, params, attrs, ctx):
        return [grad * 3 * x ** 2 * {factor}], {{}}

@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(Cube)
'''

SPEC = '''[inputs]
x = { shape = [3, 4, 4] }
[[nodes]]
name = "conv"
op = "conv2d"
filters = 2
kernel = 3
[[nodes]]
name = "cube"
op = "cube"
[[nodes]]
name = "fc"
op = "dense"
units = 2
'''


@pytest.mark.parametrize("factor, status", [(1.0, 0), (1.001, 1)])
def test_cli_exit_status_follows_the_check(tmp_path, run_cli, factor, status):
    plugin = tmp_path / "cube.py"
    plugin.write_text(WRONG_PLUGIN.format(factor=factor))
    spec = tmp_path / "net.toml"
    spec.write_text(SPEC)
    code, out, err = run_cli("gradcheck", spec, "--plugin", plugin)
    assert code == status, out + err
    assert "conv" in out and "fc" in out          # worst error per node with gradients
    assert ("FAIL" in out) == (status == 1)


def test_exactly_zero_gradient_of_a_bias_before_batch_norm_passes():
    graph = graphnet.load({"inputs": {"x": {"shape": [2, 5, 5]}}, "nodes": [
        {"name": "conv", "op": "conv2d", "filters": 3, "kernel": 3},
        {"name": "bn", "op": "batch_norm"}, {"name": "relu", "op": "relu"},
        {"name": "pool", "op": "max_pool2d", "kernel": 2}]})
    report = gradcheck(graph, batch_size=3, points_per_array=None)
    assert report.passed, report.worst


def test_a_wrong_parameter_free_op_is_named_not_the_layers_before_it(tmp_path, run_cli):
    """conv's weights disagree too (the wrong factor reaches them through cube), but the
    per-node check finds where it starts."""
    plugin = tmp_path / "cube.py"
    plugin.write_text(WRONG_PLUGIN.format(factor=1.01))
    spec = tmp_path / "net.toml"
    spec.write_text(SPEC)
    code, out, err = run_cli("gradcheck", spec, "--plugin", plugin)
    assert code == 1, out + err
    assert "the first node whose backward disagrees with its forward: cube (op cube" in " ".join(out.split())
    report = gradcheck(graphnet.load(spec, plugins=[plugin]), points_per_array=2)
    assert report.first_wrong_backward.node == "cube"
    assert report.first_wrong_backward.array == "input 1 (conv)"
    assert {c.node for c in report.node_checks if c.error > report.tolerance} == {"cube"}


def test_every_node_of_a_right_graph_passes_its_own_check():
    graph = graphnet.load("specs/branching.json")
    report = gradcheck(graph, points_per_array=1)
    checked = {c.node for c in report.node_checks}
    assert {"pool", "merge", "fc"} <= checked
    assert report.first_wrong_backward is None and report.passed
