"""Running graphs: forward in order, backward in reverse, gradients summed at fan-out."""
import numpy as np
import pytest

import graphnet
from graphnet.engine import requires_grad
from graphnet.errors import DataError, PluginError, UsageError
from graphnet.gradcheck import gradcheck

BRANCHY = {
    "inputs": {"x": {"shape": [2, 6, 6]}, "label": {"shape": [], "dtype": "int64"}},
    "nodes": [
        {"name": "c", "op": "conv2d", "filters": 3, "kernel": 3, "padding": 1, "inputs": ["x"]},
        {"name": "twice", "op": "add", "inputs": ["c", "c"]},          # the same node twice
        {"name": "t", "op": "tanh", "inputs": ["c"]},                  # fan-out of c
        {"name": "cat", "op": "concat", "inputs": ["twice", "t", "x"]},
        {"name": "bn", "op": "batch_norm"},
        {"name": "fc", "op": "dense", "units": 4},
        {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]},
    ],
    "outputs": {"logits": "fc", "loss": "loss"},
}


def test_branches_and_merges_match_finite_differences():
    report = gradcheck(graphnet.load(BRANCHY), batch_size=3, points_per_array=None)
    assert report.passed, report.worst


def test_add_of_x_and_x_doubles_the_gradient():
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}}, "nodes": [
        {"name": "sum", "op": "add", "inputs": ["x", "x"]}]})
    net = graphnet.Network(graph)
    net.forward({"x": np.ones((2, 3))}, keep_for_backward=True)
    grads = net.backward({"output": np.ones((2, 3))}, input_grads=True)
    np.testing.assert_array_equal(grads.inputs["x"], 2 * np.ones((2, 3)))


def test_float32_by_default_and_float64_on_request():
    graph = graphnet.load(BRANCHY)
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 2, 6, 6)), "label": np.array([0, 3])}
    for dtype in ("float32", "float64"):
        net = graphnet.Network(graph, dtype=dtype)
        outputs = net.forward(feeds, training=True)
        assert outputs["logits"].dtype == np.dtype(dtype)
        grads = net.backward()
        assert all(g.dtype == np.dtype(dtype) for per_node in grads.params.values()
                   for g in per_node.values())


def test_initialisation_is_seeded_and_reproducible():
    graph = graphnet.load(BRANCHY)
    first, again, other = (graphnet.Network(graph, seed=s).flat_params() for s in (1, 1, 2))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["c/weight"], other["c/weight"])


def test_training_and_evaluation_modes_differ_for_batch_norm_and_dropout():
    graph = graphnet.load({"inputs": {"x": {"shape": [4]}}, "nodes": [
        {"name": "bn", "op": "batch_norm"}, {"name": "drop", "op": "dropout", "rate": 0.5}]})
    net = graphnet.Network(graph)
    x = np.random.default_rng(0).standard_normal((8, 4)) * 3 + 5
    train_out = net.forward({"x": x}, training=True)["output"]
    eval_out = net.forward({"x": x}, training=False)["output"]
    assert (train_out == 0).any() and not (eval_out == 0).any()
    assert not np.allclose(train_out, eval_out)


def test_frozen_node_gets_no_gradient_but_passes_one_through():
    spec = {"inputs": {"x": {"shape": [3]}}, "nodes": [
        {"name": "frozen", "op": "dense", "units": 3, "trainable": False},
        {"name": "head", "op": "dense", "units": 2}]}
    net = graphnet.Network(graphnet.load(spec))
    net.forward({"x": np.ones((2, 3))}, keep_for_backward=True)
    grads = net.backward({"output": np.ones((2, 2))}, input_grads=True)
    assert "frozen" not in grads.params and "head" in grads.params
    assert grads.inputs["x"].shape == (2, 3)
    assert [node for node, _, _ in net.trainable()] == ["head", "head"]


def test_only_values_that_depend_on_a_trainable_parameter_require_a_gradient():
    # bench counts a layer's backward products by this; backward skips the rest
    spec = {"inputs": {"x": {"shape": [3]}}, "nodes": [
        {"name": "frozen", "op": "dense", "units": 3, "trainable": False},
        {"name": "relu", "op": "relu"},
        {"name": "head", "op": "dense", "units": 2}]}
    graph = graphnet.load(spec)
    made_by = [(name, graph.nodes[name]) for name in graph.order]
    assert requires_grad(made_by) == {"x": False, "frozen": False, "relu": False, "head": True}
    assert requires_grad(made_by, input_grads=True) == dict.fromkeys(graph.order, True)


def test_feeds_are_checked_with_names_and_shapes():
    net = graphnet.Network(graphnet.load(BRANCHY))
    with pytest.raises(DataError, match=r"field 'x'.*N×2×6×6.*found 4×2×5×6"):
        net.forward({"x": np.zeros((4, 2, 5, 6)), "label": np.zeros(4, int)})
    with pytest.raises(DataError, match="field 'label'.*missing input"):
        net.forward({"x": np.zeros((4, 2, 6, 6))})
    # The logits alone need no labels.
    assert net.forward({"x": np.zeros((4, 2, 6, 6))}, outputs=["logits"])["logits"].shape == (4, 4)


def test_backward_without_forward_is_a_usage_error():
    with pytest.raises(UsageError):
        graphnet.Network(graphnet.load(BRANCHY)).backward()


def test_a_plugin_returning_the_wrong_shape_is_named(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text(
        "from graphnet.hookspecs import hookimpl\nfrom graphnet.op import Op\n"
        "class Bad(Op):\n    '''Returns the wrong shape.'''\n    name = 'bad'\n"
        "    def shape(self, s, a):\n        return s[0]\n"
        "    def forward(self, xs, p, a, ctx):\n        return xs[0][:, :1], None\n"
        "    def backward(self, g, saved, p, a, ctx):\n        return [g], {}\n"
        "@hookimpl\ndef graphnet_register_ops(registry):\n    registry.add_op(Bad)\n")
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}}, "nodes": [{"name": "b", "op": "bad"}]},
                          plugins=[plugin])
    with pytest.raises(PluginError) as caught:
        graphnet.Network(graph).forward({"x": np.ones((2, 3))})
    assert "op 'bad', node 'b': forward returned 2×1" in str(caught.value)
    assert "expected 2×3" in str(caught.value)


def test_capture_keeps_intermediate_values():
    net = graphnet.Network(graphnet.load(BRANCHY))
    net.forward({"x": np.ones((1, 2, 6, 6))}, outputs=["logits"], capture=["c", "t"])
    assert net.captured["c"].shape == (1, 3, 6, 6) and set(net.captured) == {"c", "t"}


def test_parameter_gradients_come_in_the_ops_parameter_order_whatever_the_hash_seed():
    # A set of parameter names iterates in an order that changes with PYTHONHASHSEED.
    import os
    import subprocess
    import sys
    script = (
        "import numpy as np, graphnet\n"
        "graph = graphnet.load({'inputs': {'x': {'shape': [1, 4, 4]}}, 'nodes': [\n"
        "    {'name': 'c', 'op': 'conv2d', 'filters': 2, 'kernel': 3}]})\n"
        "net = graphnet.Network(graph)\n"
        "net.forward({'x': np.ones((1, 1, 4, 4))}, keep_for_backward=True)\n"
        "grads = net.backward({'output': np.ones((1, 2, 2, 2))})\n"
        "print(','.join(grads.params['c']))\n")
    orders = set()
    for seed in range(8):
        environment = dict(os.environ, PYTHONHASHSEED=str(seed))
        done = subprocess.run([sys.executable, "-c", script], env=environment,
                              capture_output=True, text=True, check=True)
        orders.add(done.stdout.strip())
    assert orders == {"weight,bias"}


def test_output_gradients_are_checked_against_the_outputs_of_the_forward():
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}}, "nodes": [
        {"name": "squash", "op": "tanh"}]})
    net = graphnet.Network(graph)
    net.forward({"x": np.ones((2, 3))}, keep_for_backward=True)
    with pytest.raises(UsageError) as unknown:
        net.backward({"nope": np.ones((2, 3))}, input_grads=True)
    assert unknown.value.field == "nope" and "output" in unknown.value.expected
    net.forward({"x": np.ones((2, 3))}, keep_for_backward=True)
    with pytest.raises(UsageError) as wrong_shape:
        net.backward({"output": np.ones((5, 3))}, input_grads=True)
    assert wrong_shape.value.field == "output"
    assert (wrong_shape.value.expected, wrong_shape.value.found) == ("2×3", "5×3")


def test_a_ragged_feed_is_a_data_error_naming_the_input():
    net = graphnet.Network(graphnet.load(BRANCHY))
    with pytest.raises(DataError, match="field 'x'.*not an array"):
        net.forward({"x": [[1, 2], [3]], "label": np.zeros(2, int)})


# --- from Python: predict, partial loading -------------------------------------------------------
def test_predict_gives_the_model_output_without_labels_in_batches():
    net = graphnet.Network(graphnet.load(BRANCHY), seed=3)
    x = np.random.default_rng(1).standard_normal((10, 2, 6, 6))
    predicted = net.predict(x, batch_size=4)  # three batches: 4, 4 and 2 samples
    expected = net.forward({"x": x}, outputs=["logits"])["logits"]
    assert predicted.shape == (10, 4) and predicted.dtype == np.float32
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)
    # inference mode: batch norm uses its running statistics, so one sample alone gives the same
    np.testing.assert_allclose(net.predict(x[:1]), predicted[:1], rtol=1e-5, atol=1e-6)
    assert net.predict(x[:0]).shape == (0, 4)


def test_predict_draws_the_same_numbers_at_every_call(tmp_path):
    """An op that draws at inference (noise, here) sees a generator seeded afresh by every
    predict: the same numbers each call, the numbers of default_rng(seed)."""
    plugin = tmp_path / "noisy.py"
    plugin.write_text(
        "from graphnet.hookspecs import hookimpl\nfrom graphnet.op import Op\n"
        "class Noisy(Op):\n    '''Adds noise, also at inference.'''\n    name = 'noisy'\n"
        "    def shape(self, s, a):\n        return s[0]\n"
        "    def forward(self, xs, p, a, ctx):\n"
        "        return xs[0] + ctx.rng.standard_normal(xs[0].shape, dtype=xs[0].dtype), None\n"
        "    def backward(self, g, saved, p, a, ctx):\n        return [g], {}\n"
        "@hookimpl\ndef graphnet_register_ops(registry):\n    registry.add_op(Noisy)\n")
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}}, "nodes": [
        {"name": "n", "op": "noisy"}], "outputs": {"y": "n"}}, plugins=[plugin])
    net = graphnet.Network(graph, seed=7)
    x = np.zeros((4, 3), np.float32)
    first = net.predict(x, batch_size=3)
    np.testing.assert_array_equal(net.predict(x, batch_size=3), first)
    draws = np.random.default_rng(7)
    expected = np.concatenate([draws.standard_normal((3, 3), dtype=np.float32),
                               draws.standard_normal((1, 3), dtype=np.float32)])
    np.testing.assert_array_equal(first, expected)
    net.seed = 8
    assert not np.array_equal(net.predict(x), first)


def test_predict_names_what_it_cannot_tell():
    net = graphnet.Network(graphnet.load(BRANCHY))
    with pytest.raises(DataError, match=r"field 'x'.*N×2×6×6"):
        net.predict(np.zeros((3, 6, 6)))
    with pytest.raises(UsageError, match="unknown output"):
        net.predict(np.zeros((3, 2, 6, 6)), output="probs")
    two = dict(BRANCHY, outputs={"logits": "fc", "features": "bn", "loss": "loss"})
    with pytest.raises(UsageError, match="cannot tell which output.*logits, features"):
        graphnet.Network(graphnet.load(two)).predict(np.zeros((3, 2, 6, 6)))
    assert graphnet.Network(graphnet.load(two)).predict(
        np.zeros((3, 2, 6, 6)), output="features").shape == (3, 8, 6, 6)


def test_a_missing_label_says_predictions_need_none():
    with pytest.raises(DataError, match=r"missing input.*predict\(x\)"):
        graphnet.Network(graphnet.load(BRANCHY)).forward({"x": np.zeros((4, 2, 6, 6))})


def test_load_params_not_strict_sets_some_layers_and_checks_the_rest():
    pretrained = graphnet.Network(graphnet.load(BRANCHY), seed=1)
    net = graphnet.Network(graphnet.load(BRANCHY), seed=2)
    kept = net.params["fc"]["weight"].copy()
    conv_only = {k: v for k, v in pretrained.flat_params().items() if k.startswith("c/")}
    with pytest.raises(UsageError, match="parameter missing.*strict=False"):
        net.load_params(conv_only)
    net.load_params(conv_only, strict=False)
    np.testing.assert_array_equal(net.params["c"]["weight"], pretrained.params["c"]["weight"])
    np.testing.assert_array_equal(net.params["fc"]["weight"], kept)
    with pytest.raises(UsageError, match=r"field 'cc/weight'.*not in this graph.*c/weight"):
        net.load_params({"cc/weight": conv_only["c/weight"]}, strict=False)
    wrong = {"c/weight": np.zeros((3, 2, 5, 5)), "fc/weight": pretrained.params["fc"]["weight"]}
    with pytest.raises(UsageError, match="wrong shape.*3×2×3×3"):
        net.load_params(wrong, strict=False)
    np.testing.assert_array_equal(net.params["fc"]["weight"], kept)  # nothing written on refusal


# --- prepared plans: resolved once per batch size, never handing back a buffer twice ----------
def _feeds(graph, batch, seed):
    from graphnet.gradcheck import random_feeds
    return random_feeds(graph, batch, seed, np.float32)


@pytest.mark.parametrize("spec", ["lenet5", "bench_classic"])
def test_outputs_and_gradients_of_a_step_are_not_overwritten_by_the_next(spec):
    """What a caller keeps from one step (outputs, gradients, captured values, predictions)
    is unchanged after the next step on other data, and shares no memory with it."""
    graph = graphnet.load(f"specs/{spec}.toml")
    net = graphnet.Network(graph)
    kept = []
    for seed in (1, 2):
        outputs = net.forward(_feeds(graph, 3, seed), training=True, capture=["conv1"])
        grads = net.backward(input_grads=True)
        arrays = {**{f"out/{k}": v for k, v in outputs.items()},
                  **{f"grad/{n}/{k}": v for n, d in grads.params.items() for k, v in d.items()},
                  **{f"input/{k}": v for k, v in grads.inputs.items()},
                  "captured/conv1": net.captured["conv1"],
                  "predict": net.predict(_feeds(graph, 1, seed)["image"])}
        kept.append((arrays, {k: np.array(v, copy=True) for k, v in arrays.items()}))
    (first, first_copy), (second, _) = kept
    for key, array in first.items():
        np.testing.assert_array_equal(array, first_copy[key], err_msg=key)
        assert not np.shares_memory(array, second[key]), key
    assert not np.array_equal(first["out/logits"], second["out/logits"])


def test_a_step_at_another_batch_size_gets_its_own_plan():
    """Batch sizes taken in turn (more than the prepared plans a network keeps) give what a
    fresh network gives at each: outputs and gradients alike."""
    graph = graphnet.load(BRANCHY)
    net = graphnet.Network(graph, dtype="float64")
    for batch in (4, 2, 4, *range(1, 11), 4):
        feeds = _feeds(graph, batch, batch)
        outputs = net.forward(feeds, training=True)
        grads = net.backward(input_grads=True)
        fresh = graphnet.Network(graph, dtype="float64")
        expected = fresh.forward(feeds, training=True)
        expected_grads = fresh.backward(input_grads=True)
        np.testing.assert_array_equal(outputs["logits"], expected["logits"])
        np.testing.assert_array_equal(grads.inputs["x"], expected_grads.inputs["x"])
        np.testing.assert_array_equal(grads.params["c"]["weight"],
                                      expected_grads.params["c"]["weight"])


def test_backward_after_a_failed_forward_is_a_usage_error():
    graph = graphnet.load(BRANCHY)
    net = graphnet.Network(graph)
    net.forward(_feeds(graph, 2, 0), training=True)
    with pytest.raises(DataError):
        net.forward({"x": np.ones((2, 2, 6, 6)), "label": np.zeros(3, int)}, training=True)
    with pytest.raises(UsageError, match="needs a forward pass"):
        net.backward()


# --- memory: what backward holds ------------------------------------------------------------
PROBE_PLUGIN = '''
import weakref
import numpy as np
from graphnet.hookspecs import hookimpl
from graphnet.op import Op

class Probe(Op):
    """tanh, keeping weak references to what it saves and is given, and checking at each
    backward that what the ones after it saved and were given is gone."""
    name = "probe"
    seen = []  # (node, what, weak reference), in the order they were made
    gone_at_backward = {}  # node: whether everything of the nodes after it was freed

    def shape(self, shapes, attrs):
        return shapes[0]

    def forward(self, inputs, params, attrs, ctx):
        output = np.tanh(inputs[0])
        saved = [output.copy(), ctx.node]  # its own copy: only its holder keeps it alive
        Probe.seen.append((ctx.node, "saved", weakref.ref(saved[0])))
        return output, saved

    def backward(self, grad_output, saved, params, attrs, ctx):
        node = saved[1]
        Probe.gone_at_backward[node] = [
            (earlier, what) for earlier, what, ref in Probe.seen
            if earlier in Probe.backward_done and ref() is not None]
        Probe.seen.append((node, "grad_output", weakref.ref(grad_output)))
        grad_input = grad_output * (1 - saved[0] ** 2)
        Probe.backward_done.append(node)
        return [grad_input], {}

    backward_done = []

@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(Probe)
'''


def test_backward_frees_each_gradient_and_saved_state_at_its_last_use(tmp_path):
    """When a node's backward runs, the gradients and saved state of the nodes after it are
    already freed; after backward, nothing of the pass is held but what it returns."""
    plugin = tmp_path / "probe.py"
    plugin.write_text(PROBE_PLUGIN)
    graph = graphnet.load({
        "inputs": {"x": {"shape": [4, 8, 8]}, "label": {"shape": [], "dtype": "int64"}},
        "nodes": [
            {"name": "c", "op": "conv2d", "filters": 4, "kernel": 3, "padding": 1,
             "inputs": ["x"]},
            {"name": "p1", "op": "probe"}, {"name": "p2", "op": "probe"},
            {"name": "p3", "op": "probe"}, {"name": "fc", "op": "dense", "units": 3},
            {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}],
        "outputs": {"loss": "loss"}}, plugins=[plugin])
    probe = type(graph.nodes["p1"].op)
    network = graphnet.Network(graph)
    network.forward({"x": np.ones((2, 4, 8, 8), np.float32), "label": np.zeros(2, int)},
                    training=True)
    grads = network.backward()
    assert probe.backward_done == ["p3", "p2", "p1"]
    assert probe.gone_at_backward == {"p3": [], "p2": [], "p1": []}
    assert [(node, what) for node, what, ref in probe.seen if ref() is not None] == []
    assert set(grads.params) == {"c", "fc"}
