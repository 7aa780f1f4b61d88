"""Fusion as a graph pass: an elementwise node runs inside the node before it, with the same
results, never where the producer's own value is wanted, and through optional protocols that
leave an op's own forward and backward meaning what they say."""
import textwrap

import numpy as np
import pytest

import graphnet
from graphnet.errors import NumericError, PluginError
from graphnet.fusion import Fused, fuse_epilogues, fused_nodes

CONV_RELU = {
    "inputs": {"x": {"shape": [8, 12, 12]}, "label": {"shape": [], "dtype": "int64"}},
    "nodes": [
        {"name": "conv", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1,
         "inputs": ["x"]},
        {"name": "relu", "op": "relu"},
        {"name": "fc", "op": "dense", "units": 6},
        {"name": "relu_fc", "op": "relu"},
        {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["relu_fc", "label"]},
    ],
    "outputs": {"loss": "loss"},
}


def run_conv_relu(spec, *, fuse, capture=(), input_grads=True):
    network = graphnet.Network(graphnet.load(spec), dtype="float64", fuse=fuse)
    rng = np.random.default_rng(5)
    channels = spec["inputs"]["x"]["shape"][0]
    feeds = {"x": rng.standard_normal((4, channels, 12, 12)), "label": np.array([0, 5, 2, 1])}
    loss = network.forward(feeds, training=True, capture=capture)["loss"]
    return network, loss, network.backward(input_grads=input_grads)


@pytest.mark.parametrize("channels", [8, 3], ids=["tap-products", "channel-planes"])
@pytest.mark.parametrize("input_grads", [True, False], ids=["input-grad", "first-layer"])
def test_a_relu_runs_inside_the_conv_or_dense_before_it_with_the_same_results(channels,
                                                                              input_grads):
    spec = {**CONV_RELU, "inputs": {**CONV_RELU["inputs"], "x": {"shape": [channels, 12, 12]}}}
    fused, fused_loss, fused_grads = run_conv_relu(spec, fuse=True, input_grads=input_grads)
    plain, plain_loss, plain_grads = run_conv_relu(spec, fuse=False, input_grads=input_grads)
    assert fused.fused_nodes() == {"relu": "conv", "relu_fc": "fc"}
    assert plain.fused_nodes() == {}
    np.testing.assert_allclose(fused_loss, plain_loss, rtol=1e-12)
    for node, arrays in plain_grads.params.items():
        for name, array in arrays.items():
            np.testing.assert_allclose(fused_grads.params[node][name], array, rtol=1e-10,
                                       atol=1e-12)
    assert set(fused_grads.inputs) == set(plain_grads.inputs) == ({"x"} if input_grads else set())
    for name, array in plain_grads.inputs.items():
        np.testing.assert_allclose(fused_grads.inputs[name], array, rtol=1e-10, atol=1e-12)


def test_a_producer_whose_own_value_is_wanted_is_not_fused():
    captured, loss, _ = run_conv_relu(CONV_RELU, fuse=True, capture=["conv"])
    assert (captured.captured["conv"] < 0).any()  # the conv's own output, before its ReLU
    _, plain_loss, _ = run_conv_relu(CONV_RELU, fuse=False)
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-12)
    second_consumer = {**CONV_RELU, "nodes": CONV_RELU["nodes"] + [
        {"name": "skip", "op": "flatten", "inputs": ["conv"]}],
        "outputs": {"loss": "loss", "skip": "skip"}}
    network, _, _ = run_conv_relu(second_consumer, fuse=True)
    assert network.fused_nodes() == {"relu_fc": "fc"}
    as_output = {**CONV_RELU, "outputs": {"loss": "loss", "conv": "conv"}}
    network, _, _ = run_conv_relu(as_output, fuse=True)
    assert network.fused_nodes() == {"relu_fc": "fc"}


def test_a_fused_producers_value_is_freed_as_soon_as_its_consumer_has_run():
    """Inference keeps only the activations still to be read: with fusion as without."""
    import tracemalloc
    nodes = []
    for layer in range(6):
        nodes += [{"name": f"conv{layer}", "op": "conv2d", "filters": 16, "kernel": 3,
                   "padding": 1, "inputs": [nodes[-1]["name"] if nodes else "x"]},
                  {"name": f"relu{layer}", "op": "relu"}]
    graph = graphnet.load({"inputs": {"x": {"shape": [16, 24, 24]}}, "nodes": nodes})
    images = np.random.default_rng(0).standard_normal((16, 16, 24, 24)).astype(np.float32)
    peaks = {}
    for fuse in (False, True):
        network = graphnet.Network(graph, fuse=fuse)
        network.forward({"x": images})  # warm: scratch buffers and plans
        tracemalloc.start()
        network.forward({"x": images})
        peaks[fuse] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert graphnet.Network(graph).fused_nodes() == {f"relu{i}": f"conv{i}" for i in range(6)}
    assert peaks[True] <= 1.2 * peaks[False], peaks


def test_the_pass_makes_one_fused_node_of_a_producer_and_its_consumer():
    graph = graphnet.load(CONV_RELU)
    steps = fuse_epilogues(graph, graph.order, keep=set(graph.outputs.values()))
    assert [(step.node.name, step.output) for step in steps] == [
        ("x", "x"), ("label", "label"), ("conv", "relu"), ("fc", "relu_fc"), ("loss", "loss")]
    fused = steps[2].node
    assert isinstance(fused.op, Fused) and fused.op_name == "conv2d"
    assert fused.inputs == ("x",) and fused.param_specs == graph.nodes["conv"].param_specs
    assert graph.nodes["conv"].op is fused.op.producer  # the graph itself is left as it was
    assert fused_nodes(steps) == {"relu": "conv", "relu_fc": "fc"}


# A producer taking epilogues and an elementwise op offering one, as a user would write them.
PROTOCOL_PLUGIN = textwrap.dedent('''
    import numpy as np
    from graphnet.fusion import Epilogue
    from graphnet.hookspecs import hookimpl
    from graphnet.op import Op

    class Triple(Op):
        """Triples its input."""
        name = "triple"
        def shape(self, input_shapes, attrs):
            return input_shapes[0]
        def forward(self, inputs, params, attrs, ctx):
            return inputs[0] * 3, None
        def backward(self, grad_output, saved, params, attrs, ctx):
            return [grad_output * 3], {}
        {producer}

    class Square(Op):
        """Squares its input (x ≥ 0 here, so the derivative follows from the output)."""
        name = "square"
        def shape(self, input_shapes, attrs):
            return input_shapes[0]
        def forward(self, inputs, params, attrs, ctx):
            return inputs[0] ** 2, inputs[0]
        def backward(self, grad_output, saved, params, attrs, ctx):
            return [2 * saved * grad_output], {}
        def epilogue(self, attrs):
            {epilogue}
            def forward(values):
                np.square(values, out=values)
            def backward(grad, output, out):
                np.multiply(grad, 2 * np.sqrt(output), out=out)
            return Epilogue(forward, backward)

    @hookimpl
    def graphnet_register_ops(registry):
        registry.add_op(Triple)
        registry.add_op(Square)
''')

FULL_PRODUCER = textwrap.indent(textwrap.dedent('''
    def accepts_epilogue(self, input_shapes, attrs):
        return True
    def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue):
        output = inputs[0] * 3
        epilogue.forward(output)
        return output, output
    def backward_with_epilogue(self, grad_output, saved, params, attrs, ctx, epilogue):
        return [epilogue.gradient(grad_output, saved) * 3], {}
'''), "    ")

# The protocol of earlier releases: accepts_epilogue and ctx.epilogue. Never fused now, so its
# backward is never handed the gradient of an epilogue it did not apply.
OLD_PRODUCER = textwrap.indent(textwrap.dedent('''
    def accepts_epilogue(self, input_shapes, attrs):
        return True
'''), "    ")


def run_protocol_plugin(tmp_path, producer, epilogue="pass", **network):
    plugin = tmp_path / "protocol.py"
    plugin.write_text(PROTOCOL_PLUGIN.replace("{producer}", producer.strip())
                      .replace("{epilogue}", epilogue))
    graph = graphnet.load({"inputs": {"x": {"shape": [4]}}, "nodes": [
        {"name": "t", "op": "triple"}, {"name": "s", "op": "square"}]}, plugins=[plugin])
    network = graphnet.Network(graph, dtype="float64", **network)
    x = np.array([[0.5, 1.0, 2.0, 3.0]])
    output = network.forward({"x": x}, keep_for_backward=True)["output"]
    grads = network.backward({"output": np.ones_like(x)}, input_grads=True)
    return network, output, grads.inputs["x"]


@pytest.mark.parametrize("producer, fused", [(FULL_PRODUCER, {"s": "t"}), (OLD_PRODUCER, {})],
                         ids=["protocol", "accepts-only"])
def test_a_users_producer_is_fused_only_through_the_whole_protocol(tmp_path, producer, fused):
    network, output, grad = run_protocol_plugin(tmp_path, producer)
    assert network.fused_nodes() == fused
    x = np.array([[0.5, 1.0, 2.0, 3.0]])
    np.testing.assert_allclose(output, (3 * x) ** 2)
    np.testing.assert_allclose(grad, 18 * x)  # d(9x²)/dx, whether fused or not


@pytest.mark.parametrize("producer, method", [(FULL_PRODUCER.replace(
    "return True", "raise KeyError('boom')"), "accepts_epilogue"), (FULL_PRODUCER, "epilogue")])
def test_a_plugin_failing_while_fusion_asks_it_is_named_with_its_node(tmp_path, producer, method):
    with pytest.raises(PluginError) as caught:
        run_protocol_plugin(tmp_path, producer, epilogue="raise KeyError('boom')")
    node = "t" if method == "accepts_epilogue" else "s"
    assert f"while running {method} of node {node!r} (op " in str(caught.value)
    assert "KeyError: 'boom'" in str(caught.value)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_a_non_finite_output_names_the_node_fused_into_it():
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}}, "nodes": [
        {"name": "fc", "op": "dense", "units": 2}, {"name": "act", "op": "relu"}]})
    with pytest.raises(NumericError) as caught:
        graphnet.Network(graph).forward({"x": np.full((2, 3), np.inf)}, check_finite=True)
    assert caught.value.node == "fc"
    assert caught.value.hint == "op dense (with 'act' fused into it)"



BN_RELU = [{"name": "conv", "op": "conv2d", "filters": 3, "kernel": 3, "padding": 1,
            "inputs": ["x"]},
           {"name": "bn", "op": "batch_norm"}, {"name": "relu", "op": "relu"}]
ADD_RELU = [{"name": "conv", "op": "conv2d", "filters": 3, "kernel": 3, "padding": 1,
             "inputs": ["x"]},
            {"name": "sum", "op": "add", "inputs": ["conv", "x"]}, {"name": "relu", "op": "relu"}]


@pytest.mark.parametrize("nodes, producer", [(BN_RELU, "bn"), (ADD_RELU, "sum")],
                         ids=["batch-norm", "residual-add"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_relu_runs_inside_a_batch_norm_or_add_before_it_with_the_same_results(
        nodes, producer, training):
    spec = {"inputs": {"x": {"shape": [3, 6, 6]}}, "nodes": nodes, "outputs": {"out": "relu"}}
    x = np.random.default_rng(6).standard_normal((4, 3, 6, 6))
    results = []
    for fuse in (True, False):
        network = graphnet.Network(graphnet.load(spec), dtype="float64", fuse=fuse)
        out = network.forward({"x": x}, training=training, keep_for_backward=True)["out"]
        grads = network.backward({"out": np.random.default_rng(7).standard_normal(out.shape)},
                                 input_grads=True)
        results.append((network.fused_nodes(), out, grads.inputs["x"],
                        *[array for by_param in grads.params.values()
                          for array in by_param.values()]))
    (fused_nodes, *fused), (plain_nodes, *plain) = results
    assert fused_nodes == {"relu": producer} and plain_nodes == {}
    for one, two in zip(fused, plain, strict=True):
        np.testing.assert_allclose(one, two, rtol=1e-12, atol=1e-14)


# --- batch norm folded into the conv before it, at inference ---------------------------------
FOLDABLE = {
    "inputs": {"x": {"shape": [3, 8, 8]}},
    "nodes": [
        {"name": "conv", "op": "conv2d", "filters": 4, "kernel": 3, "padding": 1,
         "bias": False, "inputs": ["x"]},
        {"name": "bn", "op": "batch_norm"},
        {"name": "relu", "op": "relu"},
        {"name": "proj", "op": "conv2d", "filters": 5, "kernel": 1, "stride": 2},
        {"name": "proj_bn", "op": "batch_norm"},
        # read by a second node: its batch norm keeps a pass of its own
        {"name": "shared", "op": "conv2d", "filters": 5, "kernel": 1, "stride": 2,
         "inputs": ["relu"]},
        {"name": "shared_bn", "op": "batch_norm"},
        {"name": "sum", "op": "add", "inputs": ["proj_bn", "shared_bn", "shared"]},
    ],
    "outputs": {"sum": "sum"},
}


def fold_networks():
    """The same float32 network with and without the fusion pass, batch norms mid-training."""
    networks = [graphnet.Network(graphnet.load(FOLDABLE), fuse=fuse) for fuse in (True, False)]
    rng = np.random.default_rng(3)
    flat = {key: rng.uniform(0.5, 1.5, array.shape).astype(np.float32) + (
                -1 if key.endswith(("/bias", "/running_mean")) else 0)
            for key, array in networks[0].flat_params().items()}
    for network in networks:
        network.load_params(flat)
    return networks


def profiled_nodes(network, feeds, **options):
    names = []
    output = network.forward(feeds, profile=lambda name, phase, seconds: names.append(name),
                             **options)["sum"]
    return output, names


def test_batch_norm_folds_into_the_conv_before_it_at_inference_only():
    folded, plain = fold_networks()
    feeds = {"x": np.random.default_rng(4).standard_normal((6, 3, 8, 8)).astype(np.float32)}
    output, ran = profiled_nodes(folded, feeds)
    expected, _ = profiled_nodes(plain, feeds)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
    assert ran == ["conv", "proj", "shared", "shared_bn", "sum"]  # the rest run inside
    _, ran_for_backward = profiled_nodes(folded, feeds, keep_for_backward=True)
    assert "bn" in ran_for_backward and "proj_bn" in ran_for_backward
    _, ran_capturing = profiled_nodes(folded, feeds, capture=["conv"])
    assert "bn" in ran_capturing and "proj_bn" not in ran_capturing


def test_a_folded_batch_norm_sees_every_parameter_change_between_two_inferences():
    folded, plain = fold_networks()
    feeds = {"x": np.random.default_rng(4).standard_normal((6, 3, 8, 8)).astype(np.float32)}
    before = folded.forward(feeds)["sum"]
    changes = [
        lambda network: network.load_params({"bn/running_var": np.full(4, 3, np.float32)},
                                             strict=False),
        lambda network: network.params["conv"]["weight"].__imul__(np.float32(1.5)),  # as SGD
        lambda network: network.params["proj"]["bias"].__isub__(np.float32(0.25)),
        # a training step updates the running statistics
        lambda network: network.forward(feeds, training=True),
    ]
    for change in changes:
        for network in (folded, plain):
            change(network)
        after = folded.forward(feeds)["sum"]
        np.testing.assert_allclose(after, plain.forward(feeds)["sum"], rtol=1e-5, atol=1e-5)
        assert not np.allclose(after, before)
        before = after
