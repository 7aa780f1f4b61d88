"""Importing ONNX models (graphnet.onnx_import): networks exported by PyTorch's two exporters run
in graphnet as in onnxruntime and pass gradcheck; what graphnet cannot express is refused with
a message naming the ONNX node; ONNX's own backend node cases for the supported ops agree."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphnet  # noqa: E402
from graphnet.errors import SpecError  # noqa: E402
from graphnet.gradcheck import gradcheck  # noqa: E402
from graphnet.onnx_import import import_onnx, import_spec, supported_ops  # noqa: E402
from graphnet.registry import get_registry  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

HAS_RELU6 = "relu6" in get_registry().names("op")
HAS_CEIL_MODE = "ceil_mode" in get_registry().entry("op", "max_pool2d").value.attrs


def _accepts(op: str, attribute: str, value) -> bool:
    try:
        get_registry().entry("op", op).value.attrs[attribute].parse(value, attribute)
    except (KeyError, SpecError):
        return False
    return True


HAS_FOUR_SIDED = _accepts("conv2d", "padding", [0, 1, 1, 1])


# --- networks, built and exported by PyTorch (once per session) ---------------------------------
def _torch_nets():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    def randomise_batch_norms(module):
        generator = torch.Generator().manual_seed(1)
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                count = layer.num_features
                layer.running_mean.copy_(torch.randn(count, generator=generator) * 0.2)
                layer.running_var.copy_(torch.rand(count, generator=generator) + 0.5)
                layer.weight.data.copy_(torch.rand(count, generator=generator) + 0.5)
                layer.bias.data.copy_(torch.randn(count, generator=generator) * 0.1)
        return module

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(8)
            self.down = nn.Conv2d(8, 12, 3, stride=2, padding=1, dilation=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.LazyLinear(10)

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = torch.relu(self.bn2(self.conv2(y)) + y)
            y = self.pool(torch.relu(self.down(y)))
            y = nn.functional.adaptive_avg_pool2d(y, 1)
            return self.fc(y.view(y.size(0), -1))  # TorchScript: Shape, Gather, …, Reshape

    class Inception(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.b1 = nn.Conv2d(8, 4, 1)
            self.b2a = nn.Conv2d(8, 4, 1)
            self.b2b = nn.Conv2d(4, 4, (1, 3), padding=(0, 1))
            self.b2c = nn.Conv2d(4, 6, (3, 1), padding=(1, 0))
            self.b3 = nn.Conv2d(8, 4, 3, padding=2, dilation=2)
            self.b4pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
            self.b4 = nn.Conv2d(8, 2, 1)
            self.b5 = nn.MaxPool2d(3, stride=1, padding=1)
            self.fc = nn.LazyLinear(10)

        def forward(self, x):
            x = nn.functional.leaky_relu(self.stem(x), 0.1)
            branches = [self.b1(x), self.b2c(torch.relu(self.b2b(self.b2a(x)))),
                        torch.sigmoid(self.b3(x)), torch.tanh(self.b4(self.b4pool(x))),
                        self.b5(x)]
            y = torch.cat(branches, dim=1)
            y = nn.functional.avg_pool2d(torch.relu(y), 2)
            return torch.softmax(self.fc(torch.flatten(y, 1)), dim=1)

    class MobileNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                      nn.BatchNorm2d(8), nn.ReLU6())
            self.expand = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16),
                                        nn.ReLU6())
            self.depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16,
                                                     bias=False), nn.BatchNorm2d(16), nn.ReLU6())
            self.project = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
            self.dropout = nn.Dropout(0.2)
            self.fc = nn.LazyLinear(10)

        def forward(self, x):
            x = self.stem(x)
            x = x + self.project(self.depthwise(self.expand(x)))
            x = x.mean(dim=(2, 3))
            return self.fc(self.dropout(x))

    class CeilPools(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3)
            self.max = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.avg = nn.AvgPool2d(2, stride=2, padding=1, ceil_mode=True)
            self.fc = nn.LazyLinear(10)

        def forward(self, x):
            y = self.avg(self.max(torch.relu(self.conv(x))))
            return self.fc(torch.flatten(y, 1))

    nets = {"residual": Residual, "inception": Inception, "mobilenet": MobileNet,
            "ceil_pools": CeilPools}
    return torch, {name: (lambda cls=cls: randomise_batch_norms(cls()).eval())
                   for name, cls in nets.items()}


INPUT_SHAPE = {"residual": (3, 8, 8), "inception": (3, 8, 8), "mobilenet": (3, 8, 8),
               "ceil_pools": (3, 9, 9)}
EXPORTS = {  # name: (dynamo, opset, fold constants)
    "ts11": (False, 11, True), "ts17": (False, 17, True), "ts17_bn": (False, 17, False),
    "dynamo18": (True, 18, True),
}
# (The dynamo exporter folds batch norm into the conv before it; unoptimised (optimize=False)
# it writes Expand and CastLike nodes, which are refused.)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(net, how)``: the path of ``net`` exported by PyTorch as ``how`` (a key of
    EXPORTS), made once per session."""
    folder = tmp_path_factory.mktemp("onnx_models")
    made = {}

    def export(name: str, how: str):
        if (name, how) not in made:
            torch, nets = _torch_nets()
            dynamo, opset, fold = EXPORTS[how]
            if dynamo:
                pytest.importorskip("onnxscript")
            torch.manual_seed(0)
            model = nets[name]()
            example = (torch.randn(2, *INPUT_SHAPE[name]),)
            model(*example)  # the lazy layers take their sizes
            path = folder / f"{name}_{how}.onnx"
            if dynamo:
                program = torch.onnx.export(model, example, dynamo=True, opset_version=opset,
                                            input_names=["image"], output_names=["logits"],
                                            optimize=fold, verbose=False)
                program.save(str(path))
            else:
                torch.onnx.export(model, example, str(path), dynamo=False, opset_version=opset,
                                  input_names=["image"], output_names=["logits"],
                                  dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
                                  do_constant_folding=fold,
                                  training=torch.onnx.TrainingMode.EVAL)
            made[name, how] = path
        return made[name, how]

    return export


def _onnxruntime(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _check_import(path, batch=2, gradients=True):
    """graphnet's outputs equal onnxruntime's; the imported graph's gradients pass gradcheck."""
    graph, params = import_onnx(path)
    (input_name,) = graph.inputs
    x = np.random.default_rng(0).standard_normal(
        (batch, *graph.nodes[input_name].shape)).astype(np.float32)
    expected = _onnxruntime(path, {input_name: x})
    outputs = graphnet.Network(graph, params=params).forward({input_name: x}, training=False)
    for (name, value), reference in zip(outputs.items(), expected):
        np.testing.assert_allclose(value, reference, rtol=1e-4, atol=1e-5, err_msg=name)
    if gradients:
        report = gradcheck(graph, batch_size=2, network=graphnet.Network(graph, params=params))
        assert report.passed, report.worst_by_node
    return graph


def _ops(graph) -> list[str]:
    return [node.op_name for node in graph.op_nodes]


NEEDS_OPS = {"mobilenet": HAS_RELU6, "ceil_pools": HAS_CEIL_MODE}
# The short form (PyTorch's exports take seconds): each net once with gradcheck, the dynamo
# exporter once; `pytest -m slow` runs every net through every exporter, gradcheck included.
DEFAULT_CASES = [("residual", "ts11"), ("inception", "ts17"), ("mobilenet", "ts17_bn"),
                 ("ceil_pools", "ts11")]
DYNAMO_CASE = ("mobilenet", "dynamo18")
ALL_CASES = [(net, how) for net in INPUT_SHAPE for how in EXPORTS
             # onnxruntime cannot load this one: at opset 17 its shape inference keeps the last
             # ceil_mode window that its kernel (and PyTorch, and graphnet) drops
             if (net, how) not in {("ceil_pools", "ts17"), ("ceil_pools", "ts17_bn")}]


def _run_case(exported, net, how, *, gradients=True):
    path = exported(net, how)
    if not NEEDS_OPS.get(net, True):
        # until graphnet's ops have what the net needs, the import refuses, naming the node
        with pytest.raises(SpecError, match="not supported|lacks"):
            import_onnx(path)
        return
    graph = _check_import(path, gradients=gradients)
    ops = _ops(graph)
    if net == "mobilenet":
        assert "relu6" in ops and any(n.attrs.groups == 16 for n in graph.op_nodes
                                      if n.op_name == "conv2d")
        assert ("batch_norm" in ops) == how.endswith("_bn"), ops
    if net == "inception":
        kernels = {n.attrs.kernel for n in graph.op_nodes if n.op_name == "conv2d"}
        assert {(1, 3), (3, 1)} <= kernels and "concat" in ops


@pytest.mark.parametrize("net,how", DEFAULT_CASES)
def test_pytorch_exports_import_equal_onnxruntime_and_pass_gradcheck(exported, net, how):
    _run_case(exported, net, how)


def test_the_dynamo_exporters_model_imports_equal_to_onnxruntime(exported):
    _run_case(exported, *DYNAMO_CASE, gradients=False)


@pytest.mark.slow
@pytest.mark.parametrize("net,how", [case for case in ALL_CASES if case not in DEFAULT_CASES])
def test_every_net_through_every_exporter(exported, net, how):
    _run_case(exported, net, how)


def test_residual_net_reads_as_a_person_would_write_it(exported):
    imported = import_spec(exported("residual", "ts11"))
    nodes = imported.spec["nodes"]
    # the exporter folded batch norm into the convs; flatten went into global_avg_pool
    assert [n["op"] for n in nodes] == ["conv2d", "relu", "conv2d", "add", "relu", "conv2d",
                                        "relu", "max_pool2d", "global_avg_pool", "dense"]
    assert [n["name"] for n in nodes[:4]] == ["conv1", "Relu", "conv2", "Add"]
    assert nodes[5] == {"name": "down", "op": "conv2d", "inputs": ["Relu_1"], "filters": 12,
                        "kernel": 3, "stride": 2, "padding": 1}
    assert imported.spec["inputs"] == {"image": {"shape": [3, 8, 8]}}
    assert list(imported.spec["outputs"]) == ["logits"]
    assert imported.params["fc/weight"].shape == (10, 12)
    assert imported.params["conv1/bias"].shape == (8,)


# --- models written by hand: what is refused, and the corners of what is not -------------------
def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "hand", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(a, np.float32), name)
                               for name, a in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)])


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_an_unsupported_op_is_refused_once_per_op_type_naming_node_and_opset():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="act"),
             helper.make_node("Resize", ["a", "", "scales"], ["b"], name="up1"),
             helper.make_node("Resize", ["b", "", "scales"], ["c"], name="up2"),
             helper.make_node("Erf", ["c"], ["y"], name="erf")]
    model = _model(nodes, [_value("x", ["N", 2, 4, 4])], [_value("y", ["N", 2, 16, 16])],
                   [("scales", [1, 1, 2, 2])])
    with pytest.raises(SpecError) as raised:
        import_onnx(model)
    messages = [str(e) for e in raised.value.errors]
    assert len(messages) == 2
    assert "node 'up1'" in messages[0] and "Resize (opset 17)" in messages[0]
    assert "1 more node" in messages[0] and "Conv" in messages[0] and "Gemm" in messages[0]
    assert "node 'erf'" in messages[1] and "Erf" in messages[1]


@pytest.mark.parametrize("node,output_shape,why", [
    (helper.make_node("Flatten", ["x"], ["y"], axis=2), ["N", 16],
     "Flatten is imported with axis 1"),
    (helper.make_node("Concat", ["x", "x"], ["y"], axis=2), ["N", 2, 8, 4], "channel axis"),
    (helper.make_node("Add", ["x", "row"], ["y"]), ["N", 2, 4, 4], "Add of a constant"),
    (helper.make_node("Softmax", ["x"], ["y"], axis=1), ["N", 2, 4, 4], "before opset 13"),
    (helper.make_node("ReduceMean", ["x"], ["y"], axes=[1]), ["N", 1, 4, 4], "mean over the image"),
], ids=["flatten-axis-2", "concat-axis-2", "add-row", "softmax-opset-11", "reducemean-channels"])
def test_what_would_change_the_network_is_refused(node, output_shape, why):
    node.name = "the_node"
    opset = 11 if node.op_type == "Softmax" else 17
    model = _model([node], [_value("x", ["N", 2, 4, 4])], [_value("y", output_shape)],
                   [("row", np.ones(4))], opset=opset)
    with pytest.raises(SpecError, match=why) as raised:
        import_onnx(model)
    assert "node 'the_node'" in str(raised.value)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"])
@pytest.mark.parametrize("kernel,strides", [((3, 3), [1, 1]), ((2, 3), [2, 1])])
def test_auto_pad_is_resolved_against_the_input_size(auto_pad, kernel, strides):
    weight = np.random.default_rng(0).standard_normal((3, 2, *kernel)).astype(np.float32)
    extra = {"pads": [1, 0, 0, 2]} if auto_pad == "NOTSET" else {}
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad, strides=strides,
                            **extra)
    model = _model([node], [_value("x", ["N", 2, 5, 6])], [_value("y", ["N", 3, None, None])],
                   [("w", weight)])
    asymmetric = auto_pad == "NOTSET" or kernel == (2, 3) and auto_pad != "VALID"
    if asymmetric and not HAS_FOUR_SIDED:
        with pytest.raises(SpecError, match="four different sides"):
            import_onnx(model)
        return
    graph, params = import_onnx(model)
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 6)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    result = graphnet.Network(graph, params=params).forward({"x": x})["y"]
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_gemm_attributes_and_matmul_add_fold_into_dense():
    rng = np.random.default_rng(0)
    b, c = rng.standard_normal((5, 4)), rng.standard_normal((1, 5))
    w2, bias = rng.standard_normal((5, 3)), rng.standard_normal(3)
    nodes = [helper.make_node("Gemm", ["x", "b", "c"], ["h"], transB=1, alpha=0.5, beta=2.0),
             helper.make_node("MatMul", ["h", "w2"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "bias"], ["y"], name="bias_add")]
    model = _model(nodes, [_value("x", ["N", 4])], [_value("y", ["N", 3])],
                   [("b", b), ("c", c), ("w2", w2), ("bias", bias)])
    graph, params = import_onnx(model)
    assert _ops(graph) == ["dense", "dense"] and graph.outputs == {"y": "mm"}
    x = rng.standard_normal((3, 4)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    result = graphnet.Network(graph, params=params).forward({"x": x})["y"]
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_a_fixed_batch_size_is_read_as_the_batch_axis():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_value("x", [4, 3])],
                   [_value("y", [4, 3])])
    imported = import_spec(model)
    assert imported.spec["inputs"] == {"x": {"shape": [3]}}
    assert any("fixed batch size of 4" in note for note in imported.notes)


def test_supported_ops_are_listed():
    assert {"Conv", "BatchNormalization", "Gemm", "MaxPool", "AveragePool", "Clip", "Softmax",
            "GlobalAveragePool", "ReduceMean", "Flatten", "Reshape", "MatMul", "Add", "Concat",
            "Dropout", "Identity", "Constant", "Relu", "LeakyRelu", "Sigmoid", "Tanh",
            "Shape", "Gather", "Unsqueeze"} == set(supported_ops())


def test_a_flatten_and_gemm_named_as_one_layer_become_one_dense():
    """An exporter writing one dense layer as Flatten "fc" + Gemm "fc/Gemm" (graphnet's own
    export does) gives one dense (it flattens its input itself); differently named, two nodes."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 8))
    for names, ops in ((("fc", "fc/Gemm"), ["dense"]), (("flat", "fc"), ["flatten", "dense"])):
        nodes = [helper.make_node("Flatten", ["x"], ["f"], name=names[0]),
                 helper.make_node("Gemm", ["f", "w"], ["y"], name=names[1], transB=1)]
        model = _model(nodes, [_value("x", ["N", 2, 2, 2])], [_value("y", ["N", 3])],
                       [("w", weight)])
        graph, params = import_onnx(model)
        assert _ops(graph) == ops and graph.outputs == {"y": "fc"}
        x = rng.standard_normal((2, 2, 2, 2)).astype(np.float32)
        np.testing.assert_allclose(graphnet.Network(graph, params=params).forward({"x": x})["y"],
                                   x.reshape(2, 8) @ weight.T, rtol=1e-5, atol=1e-5)
