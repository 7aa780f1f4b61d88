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

    # torchvision's ResNet-18, MobileNetV2 and VGG-11 as torchvision writes them, narrowed
    # (the layers, strides and the head's pooling and flatten are torchvision's)
    class BasicBlock(nn.Module):
        def __init__(self, inputs, filters, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, filters, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(filters)
            self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(filters)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None if stride == 1 and inputs == filters else nn.Sequential(
                nn.Conv2d(inputs, filters, 1, stride, bias=False), nn.BatchNorm2d(filters))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(y + identity)

    class ResNet18(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            stages, inputs = [], width
            for index, filters in enumerate((width, 2 * width, 4 * width, 8 * width)):
                stride = 1 if index == 0 else 2
                stages.append(nn.Sequential(BasicBlock(inputs, filters, stride),
                                            BasicBlock(filters, filters, 1)))
                inputs = filters
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(inputs, 10)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    def conv_bn_relu6(inputs, filters, kernel=3, stride=1, groups=1):
        return nn.Sequential(nn.Conv2d(inputs, filters, kernel, stride, (kernel - 1) // 2,
                                       groups=groups, bias=False),
                             nn.BatchNorm2d(filters), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, inputs, filters, stride, expansion):
            super().__init__()
            hidden = inputs * expansion
            self.use_res_connect = stride == 1 and inputs == filters
            layers = [] if expansion == 1 else [conv_bn_relu6(inputs, hidden, 1)]
            layers += [conv_bn_relu6(hidden, hidden, 3, stride, hidden),
                       nn.Conv2d(hidden, filters, 1, bias=False), nn.BatchNorm2d(filters)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            features, inputs = [conv_bn_relu6(3, 8, stride=2)], 8
            for expansion, filters, repeats, stride in ((1, 8, 1, 1), (6, 12, 2, 2)):
                for index in range(repeats):
                    features.append(InvertedResidual(inputs, filters, stride if index == 0
                                                     else 1, expansion))
                    inputs = filters
            features.append(conv_bn_relu6(inputs, 32, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, 10))

        def forward(self, x):
            x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    class VGG11(nn.Module):
        def __init__(self):
            super().__init__()
            layers, inputs = [], 3
            for filters in (4, "M", 8, "M", 16, 16, "M", 16, 16, "M", 16, 16, "M"):
                if filters == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(inputs, filters, 3, padding=1), nn.ReLU(inplace=True)]
                    inputs = filters
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # torchvision's (7, 7) at 224 pixels
            self.classifier = nn.Sequential(
                nn.Linear(16, 16), nn.ReLU(True), nn.Dropout(), nn.Linear(16, 16),
                nn.ReLU(True), nn.Dropout(), nn.Linear(16, 10))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    nets = {"residual": Residual, "inception": Inception, "mobilenet": MobileNet,
            "ceil_pools": CeilPools, "resnet18": ResNet18, "mobilenet_v2": MobileNetV2,
            "vgg11": VGG11}
    return torch, {name: (lambda cls=cls: randomise_batch_norms(cls()).eval())
                   for name, cls in nets.items()}


INPUT_SHAPE = {"residual": (3, 8, 8), "inception": (3, 8, 8), "mobilenet": (3, 8, 8),
               "ceil_pools": (3, 9, 9), "resnet18": (3, 32, 32), "mobilenet_v2": (3, 16, 16),
               "vgg11": (3, 32, 32)}
EXPORTS = {  # name: (dynamo, opset, fold constants / optimize)
    # opsets 7-10 as older PyTorch releases wrote them (the TorchScript exporter still does)
    **{f"ts{opset}": (False, opset, True) for opset in range(7, 21)},
    **{f"ts{opset}_bn": (False, opset, False) for opset in range(7, 21)},
    # the dynamo exporter writes opset 18 when asked for 17; optimize=False keeps batch norm
    # and computes sizes, zero biases and clip bounds in the graph (folded on import)
    **{f"dynamo{opset}": (True, opset, True) for opset in range(17, 21)},
    **{f"dynamo{opset}_raw": (True, opset, False) for opset in range(17, 21)},
    # a symbolic batch size (dynamic_shapes): sizes computed from Shape in the graph
    **{f"dynamo{opset}_batch": (True, opset, True) for opset in (18, 20)},
    **{f"dynamo{opset}_batch_raw": (True, opset, False) for opset in (18, 20)},
}
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
                batch = ({0: torch.export.Dim("batch")},) if "_batch" in how else None
                program = torch.onnx.export(model, example, dynamo=True, opset_version=opset,
                                            input_names=["image"], output_names=["logits"],
                                            optimize=fold, verbose=False, dynamic_shapes=batch)
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


NEEDS_OPS = {"mobilenet": HAS_RELU6, "mobilenet_v2": HAS_RELU6, "ceil_pools": HAS_CEIL_MODE}
# The short form (PyTorch's exports take seconds): each small net once with gradcheck, the
# dynamo exporter with and without its optimizer, and the three architectures once each;
# `pytest -m slow` runs every net through every exporter, gradcheck included.
DEFAULT_CASES = [("residual", "ts11"), ("inception", "ts17"), ("mobilenet", "ts17_bn"),
                 ("ceil_pools", "ts11"), ("mobilenet", "dynamo20_raw")]
FORWARD_CASES = [("mobilenet", "dynamo18"), ("resnet18", "dynamo18_raw"),
                 ("residual", "dynamo18_batch_raw"),  # x.view(x.size(0), -1): the batch's Shape
                 ("mobilenet_v2", "ts13_bn"), ("vgg11", "dynamo19_raw"),
                 ("inception", "ts7"), ("mobilenet", "ts9_bn")]  # opsets of older releases
ALL_CASES = [(net, how) for net in INPUT_SHAPE for how in EXPORTS
             # onnxruntime cannot load these: from opset 13 its shape inference keeps the last
             # ceil_mode window that its kernel (and PyTorch, and graphnet) drops
             if not (net == "ceil_pools" and how.startswith("ts")
                     and int(how[2:].split("_")[0]) >= 13)]


def _run_case(exported, net, how, *, gradients=True):
    path = exported(net, how)
    if not NEEDS_OPS.get(net, True):
        # until graphnet's ops have what the net needs, the import refuses, naming the node
        with pytest.raises(SpecError, match="not supported|lacks"):
            import_onnx(path)
        return
    # the dynamo exporter fixes the example's batch size of 2 unless told otherwise
    fixed_batch = how.startswith("dynamo") and "_batch" not in how
    graph = _check_import(path, batch=2 if fixed_batch else 3, gradients=gradients)
    ops = _ops(graph)
    if net == "mobilenet":
        assert "relu6" in ops and any(n.attrs.groups == 16 for n in graph.op_nodes
                                      if n.op_name == "conv2d")
        assert ("batch_norm" in ops) == how.endswith(("_bn", "_raw")), ops
    if net == "resnet18":  # every conv, shortcuts included, is there, bias-less before its BN
        convs = [n for n in graph.op_nodes if n.op_name == "conv2d"]
        assert len(convs) == 20 and ops[-2:] == ["global_avg_pool", "dense"]
        if how.endswith(("_bn", "_raw")):
            assert ops.count("batch_norm") == 20 and not any(n.attrs.bias for n in convs)
            # both exporters' module paths name the nodes (dynamo's from its metadata)
            names = [node.name for node in graph.op_nodes]
            assert names[:8] == ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1",
                                 "layer1.0.bn1", "layer1.0.relu", "layer1.0.conv2"], names
            assert {"layer2.0.downsample.0", "layer2.0.downsample.1", "fc"} <= set(names)
    if net == "inception":
        kernels = {n.attrs.kernel for n in graph.op_nodes if n.op_name == "conv2d"}
        assert {(1, 3), (3, 1)} <= kernels and "concat" in ops


@pytest.mark.parametrize("net,how", DEFAULT_CASES)
def test_pytorch_exports_import_equal_onnxruntime_and_pass_gradcheck(exported, net, how):
    _run_case(exported, net, how)


@pytest.mark.parametrize("net,how", FORWARD_CASES)
def test_pytorch_exports_import_equal_to_onnxruntime(exported, net, how):
    _run_case(exported, net, how, gradients=False)


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
            "GlobalAveragePool", "GlobalMaxPool", "Sum", "ReduceMean", "Flatten", "Reshape", "MatMul", "Add", "Concat",
            "Dropout", "Identity", "Constant", "Relu", "LeakyRelu", "Sigmoid", "Tanh",
            # folded: evaluated when their inputs are constants
            "Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "CastLike", "Expand", "Slice",
            "ConstantOfShape", "Sub", "Mul", "Div", "Pad", "Transpose"} == set(supported_ops())


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


# --- constant folding: what exporters compute from constants is evaluated on import ----------
def _int64(name, values):
    return helper.make_node("Constant", [], [name], name=name,
                            value=numpy_helper.from_array(np.asarray(values, np.int64)))


def _equal_to_onnxruntime(model, x):
    graph, params = import_onnx(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})
    outputs = graphnet.Network(graph, params=params).forward({"x": x}, training=False)
    for value, reference in zip(outputs.values(), expected):
        np.testing.assert_allclose(value, reference, rtol=1e-4, atol=1e-5)
    return graph


def test_sizes_and_bounds_computed_from_constants_are_folded():
    """A flatten whose (N, -1) is cut from the input's Shape by Slice and Concat, a clip whose
    bounds are computed (ONNX's integer Div truncates: -7 / 2 is -3, not numpy's -4), a conv
    bias Expanded from a scalar: each evaluated with numpy, the network as written."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 2, 3, 3))
    nodes = [_int64("three", [3]), _int64("minus_seven", -7), _int64("two", 2),
             helper.make_node("Shape", ["w"], ["w_shape"]),
             helper.make_node("Slice", ["w_shape", "zero", "one"], ["filters"]),
             helper.make_node("CastLike", ["bias_value", "x"], ["bias_scalar"]),
             helper.make_node("Expand", ["bias_scalar", "filters"], ["bias"]),
             helper.make_node("Conv", ["x", "w", "bias"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("Div", ["minus_seven", "two"], ["low_int"]),
             helper.make_node("Cast", ["low_int"], ["low"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["low", "half"], ["low_half"]),
             helper.make_node("Clip", ["c", "low_half", ""], ["clipped"], name="clip"),
             helper.make_node("Shape", ["clipped"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
             helper.make_node("Squeeze", ["batch"], ["batch_scalar"]),
             helper.make_node("Unsqueeze", ["batch_scalar", "zero"], ["batch_again"]),
             helper.make_node("Concat", ["batch_again", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["clipped", "target"], ["y"], name="flat")]
    graph = helper.make_graph(nodes, "folds", [_value("x", ["N", 2, 4, 4])],
                              [_value("y", ["N", 48])], [
        numpy_helper.from_array(weight.astype(np.float32), "w"),
        numpy_helper.from_array(np.array(0.25), "bias_value"),  # float64, cast like x
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one")])
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])
    x = rng.standard_normal((3, 2, 4, 4)).astype(np.float32) * 4
    graph = _equal_to_onnxruntime(model, x)
    assert _ops(graph) == ["conv2d", "clip", "flatten"]
    assert graph.nodes["clip"].attrs.min == -1.5


@pytest.mark.parametrize("use", ["arithmetic", "expand"])
def test_the_batch_size_is_read_by_reshape_only(use):
    """graphnet runs any batch size: a size computed from it would be a different network."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"]),
             helper.make_node("Mul", ["batch", "two"], ["twice"], name="doubled")
             if use == "arithmetic" else
             helper.make_node("Expand", ["one", "shape"], ["twice"], name="doubled"),
             helper.make_node("Concat", ["twice", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    graph = helper.make_graph(nodes, "batch", [_value("x", ["N", 2, 4, 4])],
                              [_value("y", [None, None])], [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one")])
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])
    with pytest.raises(SpecError, match="batch size") as raised:
        import_onnx(model)
    assert "node 'doubled'" in str(raised.value)


def test_a_fold_only_op_on_a_network_value_is_refused():
    nodes = [helper.make_node("Expand", ["x", "shape"], ["y"], name="spread")]
    graph = helper.make_graph(nodes, "expand", [_value("x", ["N", 1, 4, 4])],
                              [_value("y", ["N", 3, 4, 4])],
                              [numpy_helper.from_array(np.array([1, 3, 4, 4], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])
    with pytest.raises(SpecError, match="Expand is imported only when all its inputs are "
                                        "constants") as raised:
        import_onnx(model)
    assert "node 'spread'" in str(raised.value) and "'x'" in str(raised.value)


# --- other exporters' shapes: tf2onnx and Keras write Pad, Squeeze and Transpose -------------
def _padded_model(consumer: str, value: float, activation: str = "Relu", ceil_mode: int = 0,
                  pool_pads=(0, 0, 0, 0), include_pad: int = 0):
    """Conv (VALID) → activation → Pad(value) → consumer: a Keras ZeroPadding2D before a layer."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c"], name="stem"),
             helper.make_node(activation, ["c"], ["a"], name="act"),
             helper.make_node("Pad", ["a", "pads", "value"], ["p"], name="pad")]
    initializers = [("w0", rng.standard_normal((4, 2, 1, 1))),
                    ("value", np.array(value)),
                    ("w", rng.standard_normal((3, 4, 3, 3)))]
    if consumer == "Conv":
        nodes.append(helper.make_node("Conv", ["p", "w"], ["y"], name="consumer",
                                      strides=[2, 2]))
        output = ["N", 3, 4, 4]
    else:
        nodes.append(helper.make_node(consumer, ["p"], ["y"], name="consumer",
                                      kernel_shape=[3, 3], strides=[2, 2], ceil_mode=ceil_mode,
                                      pads=list(pool_pads),
                                      **({"count_include_pad": include_pad}
                                         if consumer == "AveragePool" else {})))
        output = ["N", 4, None, None]
    graph = helper.make_graph(nodes, "padded", [_value("x", ["N", 2, 7, 7])],
                              [_value("y", output)],
                              [numpy_helper.from_array(np.asarray(a, np.float32), name)
                               for name, a in initializers] +
                              [numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 2, 1],
                                                                np.int64), "pads")])
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])


@pytest.mark.parametrize("consumer,value,activation,pool_pads,include_pad", [
    ("Conv", 0.0, "Tanh", (0, 0, 0, 0), 0),
    ("MaxPool", -np.inf, "Tanh", (0, 0, 0, 0), 0),
    ("MaxPool", 0.0, "Relu", (1, 0, 0, 1), 0),   # zeros never win over a ReLU's output
    ("AveragePool", 0.0, "Tanh", (0, 0, 0, 0), 0),  # the zeros are counted: include_pad
    ("AveragePool", 0.0, "Tanh", (1, 0, 0, 0), 1),
], ids=["conv", "maxpool-inf", "maxpool-zeros-after-relu", "avgpool", "avgpool-own-pads"])
def test_a_pad_before_a_conv_or_pool_becomes_its_padding(consumer, value, activation,
                                                         pool_pads, include_pad):
    if not HAS_FOUR_SIDED:
        pytest.skip("needs four-sided padding")
    model = _padded_model(consumer, value, activation, pool_pads=pool_pads,
                          include_pad=include_pad)
    x = np.random.default_rng(1).standard_normal((2, 2, 7, 7)).astype(np.float32)
    graph = _equal_to_onnxruntime(model, x)
    assert [node.name for node in graph.op_nodes] == ["stem", "act", "consumer"]


@pytest.mark.parametrize("consumer,value,activation,ceil_mode,pool_pads,include_pad,why", [
    ("Conv", 1.0, "Tanh", 0, (0, 0, 0, 0), 0, "with zeros"),
    ("MaxPool", 0.0, "Tanh", 0, (0, 0, 0, 0), 0, "zeros after a ReLU"),  # tanh may be < 0
    ("MaxPool", -np.inf, "Relu", 1, (0, 0, 0, 0), 0, "without ceil_mode"),
    ("AveragePool", 0.0, "Tanh", 0, (1, 0, 0, 0), 0, "count_include_pad = 1"),
], ids=["conv-ones", "maxpool-zeros-after-tanh", "maxpool-ceil", "avgpool-mixed-divisor"])
def test_a_pad_that_is_not_the_layers_own_padding_is_refused(consumer, value, activation,
                                                             ceil_mode, pool_pads, include_pad,
                                                             why):
    model = _padded_model(consumer, value, activation, ceil_mode, pool_pads, include_pad)
    with pytest.raises(SpecError, match=why) as raised:
        import_onnx(model)
    assert "node 'consumer'" in str(raised.value)


def test_a_pad_read_by_anything_else_is_refused():
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
             helper.make_node("Relu", ["p"], ["y"], name="after")]
    graph = helper.make_graph(nodes, "pad", [_value("x", ["N", 2, 4, 4])],
                              [_value("y", ["N", 2, 6, 6])],
                              [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1],
                                                                np.int64), "pads")])
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])
    with pytest.raises(SpecError, match="only as the padding of a Conv") as raised:
        import_onnx(model)
    assert "node 'after'" in str(raised.value)


@pytest.mark.parametrize("opset", [11, 13])
def test_a_pooled_image_squeezed_to_n_c_becomes_one_global_avg_pool(opset):
    """Keras' GlobalAveragePooling2D through tf2onnx: GlobalAveragePool, Squeeze(axes 2, 3)."""
    rng = np.random.default_rng(0)
    axes = {"axes": [2, 3]} if opset < 13 else {}
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"], name="pool"),
             helper.make_node("Squeeze", ["g"] + (["axes"] if opset >= 13 else []), ["s"],
                              name="squeeze", **axes),
             helper.make_node("Gemm", ["s", "w"], ["y"], name="fc", transB=1)]
    initializers = [numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "w")]
    if opset >= 13:
        initializers.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
    graph = helper.make_graph(nodes, "squeeze", [_value("x", ["N", 3, 4, 4])],
                              [_value("y", ["N", 5])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)])
    graph = _equal_to_onnxruntime(model, rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
    assert _ops(graph) == ["global_avg_pool", "dense"]


def test_tf2onnxs_channels_last_input_is_refused_with_the_export_option_that_avoids_it():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
             helper.make_node("Relu", ["t"], ["y"])]
    model = _model(nodes, [_value("x", ["N", 4, 4, 3])], [_value("y", ["N", 3, 4, 4])])
    with pytest.raises(SpecError, match="the Transpose before it is imported only as the "
                                        "order of a flatten's features") as raised:
        import_onnx(model)
    message = str(raised.value)
    assert "node 'y'" in message and "from 'to_nchw'" in message and "--inputs-as-nchw" in message


@pytest.mark.parametrize("perm", [[0, 2, 1], [0, 2, 3, 7], [0, 2, 2, 1], [0, -1, 1, 2]],
                         ids=["too-short", "out-of-range", "repeated", "negative"])
@pytest.mark.parametrize("folded", [False, True], ids=["of-the-input", "of-a-constant"])
def test_a_transpose_whose_perm_does_not_order_the_axes_is_refused(perm, folded):
    # onnx's checker checks only the attribute's type: these ended in a traceback from numpy
    # ("axes don't match array", IndexError), whether the Transpose was converted or folded
    transpose = helper.make_node("Transpose", ["c" if folded else "x"], ["t"], name="to_nhwc",
                                 perm=perm)
    reader = helper.make_node("Add", ["x", "t"], ["y"]) if folded else \
        helper.make_node("Flatten", ["t"], ["y"], axis=1)
    model = _model([transpose, reader], [_value("x", ["N", 3, 4, 4])],
                   [_value("y", ["N", 3, 4, 4] if folded else ["N", 48])],
                   [("c", np.ones((1, 3, 4, 4)))] if folded else ())
    with pytest.raises(SpecError, match="perm must name each axis once") as raised:
        import_onnx(model)
    assert "node 'to_nhwc', field 'perm'" in str(raised.value) and str(perm) in str(raised.value)


def _conv_model(nodes, initializers, output_shape, opset=17):
    graph = helper.make_graph(nodes, "arithmetic", [_value("x", ["N", 2, 5, 5])],
                              [_value("y", output_shape)],
                              [numpy_helper.from_array(np.asarray(a, np.float32), name)
                               for name, a in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)])


def test_constant_factors_and_terms_go_into_the_layers_weights():
    """x / 255 before a padded conv (0 / 255 is 0 at the border: exact), a per-channel factor
    and a subtracted term after a conv, x + 0 and x · 1: one conv and a relu, as written."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Div", ["x", "255"], ["scaled"], name="rescale"),
             helper.make_node("Add", ["scaled", "zero"], ["offset"], name="no_offset"),
             helper.make_node("Conv", ["offset", "w", "b"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("Mul", ["gamma", "c"], ["g"], name="gamma_mul"),
             helper.make_node("Sub", ["g", "beta"], ["s"], name="beta_sub"),
             helper.make_node("Mul", ["s", "one"], ["m"], name="times_one"),
             helper.make_node("Relu", ["m"], ["y"], name="relu")]
    model = _conv_model(nodes, [("255", 255.0), ("zero", np.zeros((1, 1, 1))),
                                ("w", rng.standard_normal((3, 2, 3, 3))),
                                ("b", rng.standard_normal(3)),
                                ("gamma", rng.standard_normal((1, 3, 1, 1))),
                                ("beta", rng.standard_normal((3, 1, 1))), ("one", 1.0)],
                        ["N", 3, 5, 5])
    x = rng.uniform(0, 255, (2, 2, 5, 5)).astype(np.float32)
    graph = _equal_to_onnxruntime(model, x)
    assert _ops(graph) == ["conv2d", "relu"]


@pytest.mark.parametrize("node,why", [
    (helper.make_node("Mul", ["x", "row"], ["y"], name="the_node"), "one per channel"),
    (helper.make_node("Sub", ["c1", "x"], ["y"], name="the_node"), "a constant minus a value"),
    (helper.make_node("Div", ["c1", "x"], ["y"], name="the_node"), "a constant over a value"),
    (helper.make_node("Mul", ["x", "x"], ["y"], name="the_node"), "Mul of two values"),
    # held for a Conv to take: as the model's output it has none
    (helper.make_node("Sub", ["x", "c1"], ["y"], name="the_node"), "a graph output is the Mul, "
                                                                   "Div, Add or Sub"),
    # zeros that broadcast to a higher rank make another shape: not the value itself
    (helper.make_node("Add", ["x", "zeros"], ["y"], name="the_node"), "Add of a constant"),
    (helper.make_node("Add", ["x", "zero_row"], ["y"], name="the_node"), "Add of a constant"),
], ids=["mul-row", "const-minus-x", "const-over-x", "mul-two-values", "sub-from-an-input",
        "add-zeros-of-higher-rank", "add-zeros-that-do-not-broadcast"])
def test_arithmetic_that_no_layer_can_take_is_refused(node, why):
    model = _conv_model([node], [("row", np.arange(1, 6)), ("c1", 2.0),
                                 ("zeros", np.zeros((3, 1, 2, 5, 5))), ("zero_row", np.zeros(3))],
                        [None] * 4)
    with pytest.raises(SpecError, match=why) as raised:
        import_onnx(model)
    assert "'the_node'" in str(raised.value)


def test_a_scaled_value_read_by_anything_but_a_conv_is_refused():
    nodes = [helper.make_node("Mul", ["x", "c1"], ["s"], name="scale"),
             helper.make_node("Identity", ["s"], ["i"], name="same"),
             helper.make_node("Relu", ["i"], ["y"], name="after")]
    model = _conv_model(nodes, [("c1", 2.0)], ["N", 2, 5, 5])
    with pytest.raises(SpecError, match="the Mul, Div, Add or Sub of a constant before it") \
            as raised:
        import_onnx(model)
    assert "node 'after'" in str(raised.value) and "from 'scale'" in str(raised.value)
    # nor may it be what the model gives
    model = _conv_model(nodes[:1], [("c1", 2.0)], ["N", 2, 5, 5])
    model.graph.output[0].name = "s"
    with pytest.raises(SpecError, match="a graph output is the Mul, Div, Add or Sub of a "
                                        "constant 'scale'"):
        import_onnx(model)


def test_a_grouped_conv_takes_a_per_channel_factor_for_each_of_its_groups():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Mul", ["x", "factor"], ["s"], name="scale"),
             helper.make_node("Conv", ["s", "w"], ["y"], name="conv", group=2)]
    model = _conv_model(nodes, [("factor", rng.standard_normal((2, 1, 1))),
                                ("w", rng.standard_normal((4, 1, 3, 3)))], ["N", 4, 3, 3])
    _equal_to_onnxruntime(model, rng.standard_normal((2, 2, 5, 5)).astype(np.float32))


@pytest.mark.parametrize("groups", [1, 2])
def test_a_normalization_before_a_conv_that_does_not_pad_goes_into_its_weights_and_bias(groups):
    """(x - mean) / std per channel, as Keras' Normalization writes it, before a VALID conv:
    the factor into the weights, the shifted taps into the bias."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Sub", ["x", "mean"], ["centred"], name="centre"),
             helper.make_node("Div", ["centred", "std"], ["normal"], name="normalise"),
             helper.make_node("Conv", ["normal", "w", "b"], ["y"], name="conv", group=groups)]
    model = _conv_model(nodes, [("mean", rng.standard_normal((1, 2, 1, 1))),
                                ("std", rng.uniform(0.5, 2, (2, 1, 1))),
                                ("w", rng.standard_normal((4, 2 // groups, 3, 3))),
                                ("b", rng.standard_normal(4))], ["N", 4, 3, 3])
    graph = _equal_to_onnxruntime(model, rng.standard_normal((2, 2, 5, 5)).astype(np.float32))
    assert _ops(graph) == ["conv2d"]


def test_a_constant_added_before_a_conv_that_pads_is_refused():
    """Its zero padding would not be shifted: a different network at the border."""
    nodes = [helper.make_node("Add", ["x", "offset"], ["shifted"], name="offset"),
             helper.make_node("Conv", ["shifted", "w"], ["y"], name="conv", pads=[1] * 4)]
    model = _conv_model(nodes, [("offset", -1.0), ("w", np.ones((3, 2, 3, 3)))],
                        ["N", 3, 5, 5])
    with pytest.raises(SpecError, match="only when the Conv does not pad") as raised:
        import_onnx(model)
    assert "node 'conv'" in str(raised.value) and "Rescaling" in str(raised.value)


@pytest.mark.parametrize("op", ["Mul", "Add"])
def test_the_batch_size_is_not_taken_into_a_layers_weights(op):
    """c · N or c + N: graphnet runs any batch size, so no weight can hold N."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Shape", ["x"], ["shape"]), _int64("zero", 0),
             helper.make_node("Gather", ["shape", "zero"], ["batch"]),
             helper.make_node("Cast", ["batch"], ["n"], to=TensorProto.FLOAT),
             helper.make_node(op, ["c", "n"], ["y"], name="the_node")]
    model = _conv_model(nodes, [("w", np.ones((3, 2, 3, 3)))], ["N", 3, 3, 3])
    with pytest.raises(SpecError, match="input 2 holds the batch size") as raised:
        import_onnx(model)
    assert "node 'the_node'" in str(raised.value) and "'n'" in str(raised.value)


@pytest.mark.parametrize("op,constant", [("Mul", 2.0), ("Add", [1.0, -2.0, 3.0])])
def test_a_layer_whose_output_is_read_elsewhere_does_not_take_a_factor_or_term(op, constant):
    """Conv → c, Identity(c), · 2 or + bias, a VALID Conv: c is also an output, so the factor
    or term goes into the second Conv (taking it as its input's), never into the first."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Identity", ["c"], ["d"], name="same"),
             helper.make_node(op, ["d", "k"], ["s"], name="affine"),
             helper.make_node("Conv", ["s", "w2", "b2"], ["y"], name="conv2")]
    model = _conv_model(nodes, [("w", rng.standard_normal((3, 2, 3, 3))),
                                ("k", np.reshape(constant, (-1, 1, 1))),
                                ("w2", rng.standard_normal((4, 3, 3, 3))),
                                ("b2", rng.standard_normal(4))], ["N", 4, 1, 1])
    model.graph.output.append(_value("c", ["N", 3, 3, 3]))
    graph = _equal_to_onnxruntime(model, rng.standard_normal((2, 2, 5, 5)).astype(np.float32))
    assert _ops(graph) == ["conv2d", "conv2d"]


@pytest.mark.parametrize("op,layer", [("Mul", "Conv"), ("Add", "Conv"), ("Add", "Gemm")])
def test_a_factor_or_term_on_a_layer_read_elsewhere_as_an_output_is_refused(op, layer):
    """graphnet has no op scaling or shifting a value: with the layer's output read by
    something else too, the factor or term cannot go into its weights and bias."""
    shape, weight = ((["N", 3, 3, 3], np.ones((3, 2, 3, 3))) if layer == "Conv" else
                     (["N", 3], np.ones((3, 50))))
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat")] if layer == "Gemm" else []
    nodes += [helper.make_node(layer, ["f" if layer == "Gemm" else "x", "w"], ["c"],
                               name="layer", **({"transB": 1} if layer == "Gemm" else {})),
              helper.make_node("Identity", ["c"], ["d"], name="same"),
              helper.make_node(op, ["d", "k"], ["y"], name="the_node")]
    model = _conv_model(nodes, [("w", weight), ("k", 2.0)], shape)
    model.graph.output.append(_value("c", shape))
    with pytest.raises(SpecError, match=f"{op} of a constant|a graph output is the Mul") \
            as raised:
        import_onnx(model)
    assert "'the_node'" in str(raised.value) and "nothing else reads" in str(raised.value)


def test_a_pooled_image_read_elsewhere_does_not_become_a_global_avg_pool():
    """GlobalAveragePool → g, Identity, Flatten: g is an output too, (C, 1, 1) as ONNX's."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"], name="pool"),
             helper.make_node("Identity", ["g"], ["d"], name="same"),
             helper.make_node("Flatten", ["d"], ["y"], name="flat")]
    model = _conv_model(nodes, [], ["N", 2])
    model.graph.output.append(_value("g", ["N", 2, 1, 1]))
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    graph = _equal_to_onnxruntime(model, x)
    assert _ops(graph) == ["avg_pool2d", "flatten"]


@pytest.mark.parametrize("op,constant,field", [
    ("Div", [1.0, 0.0, 2.0], "input 2"), ("Mul", [1.0, np.inf, 2.0], "input 2"),
    ("Add", [np.nan, 0.0, 2.0], "input 2")], ids=["div-by-zero", "mul-inf", "add-nan"])
def test_a_factor_or_term_that_is_not_finite_is_refused(op, constant, field):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node(op, ["c", "k"], ["y"], name="the_node")]
    model = _conv_model(nodes, [("w", np.ones((3, 2, 3, 3))),
                                ("k", np.reshape(constant, (3, 1, 1)))], ["N", 3, 3, 3])
    with pytest.raises(SpecError, match="holding a zero|not finite") as raised:
        import_onnx(model)
    message = str(raised.value)
    assert "node 'the_node'" in message and field in message


@pytest.mark.parametrize("constant", [np.full((1, 1, 3, 1, 1), 2.0), np.full((1, 1, 1, 1, 1), 2.0)],
                         ids=["per-channel", "one-value"])
def test_a_factor_of_higher_rank_than_the_value_is_refused(constant):
    """A rank-5 constant broadcasts the N×C×H×W value to rank 5: another shape."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Mul", ["c", "k"], ["y"], name="the_node")]
    model = _conv_model(nodes, [("w", np.ones((3, 2, 3, 3))), ("k", constant)],
                        ["N", 1, 3, 3, 3])
    with pytest.raises(SpecError, match="Mul of a constant must be") as raised:
        import_onnx(model)
    assert "node 'the_node'" in str(raised.value) and "rank" in str(raised.value)


def test_a_zero_pad_as_wide_as_a_max_pools_window_is_refused():
    """A window over the padding only: ONNX's maximum of zeros there, graphnet has none."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="act"),
             _int64("pads", [0, 0, 2, 0, 0, 0, 0, 1]),  # 2 rows on top: the 2×2 window's
             helper.make_node("Pad", ["r", "pads"], ["p"], name="pad"),
             helper.make_node("MaxPool", ["p"], ["y"], name="the_node", kernel_shape=[2, 2],
                              strides=[2, 2])]
    model = _conv_model(nodes, [], ["N", 2, None, None])
    with pytest.raises(SpecError, match="every window keeps a pixel of the image") as raised:
        import_onnx(model)
    assert "node 'the_node'" in str(raised.value)


# --- old and other exporters' forms: opsets 6-12, Caffe2, keras2onnx, onnx.helper graphs -------
def _refusal(model) -> str:
    with pytest.raises(SpecError) as raised:
        import_onnx(model)
    return str(raised.value)


def _batch_norm_model(opset, outputs=("y",), **attributes):
    rng = np.random.default_rng(0)
    statistics = [(name, rng.standard_normal(3)) for name in ("scale", "bias", "mean")]
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"],
                            list(outputs), name="bn", **attributes)
    return _model([node], [_value("x", ["N", 3, 4, 4])], [_value("y", ["N", 3, 4, 4])],
                  [*statistics, ("var", rng.random(3) + 0.5)], opset=opset)


@pytest.mark.parametrize("opset", [7, 9, 13])
def test_a_batch_norm_declaring_its_statistics_outputs_is_refused_as_training_mode(opset):
    """Opsets 7-13 say training mode by the outputs: onnxruntime then normalises with the
    batch's statistics, though nothing reads them (PyTorch wrote them for a model in train())."""
    model = _batch_norm_model(opset, ["y", "mean_out", "var_out", "saved_mean", "saved_var"])
    message = _refusal(model)
    assert "node 'bn', field 'outputs'" in message and "training mode" in message


@pytest.mark.parametrize("op", ["BatchNormalization", "Dropout"])
@pytest.mark.parametrize("is_test", [None, 0])
def test_training_mode_before_opset_7_is_refused(op, is_test):
    """Before opset 7 ``is_test`` (default 0) chose the mode: 0 is training."""
    attributes = {} if is_test is None else {"is_test": is_test}
    if op == "Dropout":
        model = _model([helper.make_node("Dropout", ["x"], ["y"], name="drop", **attributes)],
                       [_value("x", ["N", 3])], [_value("y", ["N", 3])], opset=6)
    else:
        model = _batch_norm_model(6, **attributes)
    message = _refusal(model)
    assert "field 'is_test'" in message and "training mode" in message


def test_batch_norm_and_dropout_in_test_mode_before_opset_7_import():
    model = _batch_norm_model(6, is_test=1, epsilon=1e-3)
    scale, bias, mean, var = (numpy_helper.to_array(t).reshape(1, 3, 1, 1)
                              for t in model.graph.initializer)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    graph, params = import_onnx(model)
    np.testing.assert_allclose(graphnet.Network(graph, params=params).forward({"x": x})["y"],
                               (x - mean) / np.sqrt(var + 1e-3) * scale + bias,
                               rtol=1e-5, atol=1e-5)
    dropout = _model([helper.make_node("Dropout", ["x"], ["y"], is_test=1, ratio=0.3)],
                     [_value("x", ["N", 3])], [_value("y", ["N", 3])], opset=6)
    assert _ops(import_onnx(dropout)[0]) == ["dropout"]


@pytest.mark.parametrize("op,opset", [("MaxPool", 11), ("AveragePool", 19)])
def test_a_dilated_pool_with_same_padding_is_refused(op, opset):
    """ONNX pads for the dilated window (a 7×6 image stays 7×6), onnxruntime for the kernel
    alone (6×5)."""
    node = helper.make_node(op, ["x"], ["y"], name="pool", kernel_shape=[2, 2],
                            dilations=[2, 2], auto_pad="SAME_UPPER")
    message = _refusal(_model([node], [_value("x", ["N", 3, 7, 6])],
                              [_value("y", ["N", 3, None, None])], opset=opset))
    assert "node 'pool', field 'auto_pad'" in message and "dilations 2" in message


def test_a_conv_whose_kernel_shape_differs_from_its_weight_is_refused():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[2, 2])
    message = _refusal(_model([node], [_value("x", ["N", 3, 4, 4])],
                              [_value("y", ["N", 2, None, None])],
                              [("w", np.ones((2, 3, 3, 3)))], opset=9))
    assert "node 'conv', field 'kernel_shape'" in message and "expected [3, 3], found [2, 2]" \
        in message


@pytest.mark.parametrize("opset,shape,axis", [
    (9, [5, 1, 1], None),  # Caffe2's SqueezeNet: a softmax of the pooled N×C×1×1 scores
    (11, [1, 1, 5], 1),
    (11, [3, 1, 5], 2),
])
def test_a_softmax_before_opset_13_over_one_axis_longer_than_1_imports(opset, shape, axis):
    """Before opset 13 the axes from ``axis`` on are flattened into one: where the others have
    size 1 that is the softmax over the one that does not."""
    node = helper.make_node("Softmax", ["x"], ["y"], name="softmax",
                            **({} if axis is None else {"axis": axis}))
    model = _model([node], [_value("x", ["N", *shape])], [_value("y", ["N", *shape])],
                   opset=opset)
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    assert _ops(_equal_to_onnxruntime(model, x)) == ["softmax"]


def test_a_global_max_pool_becomes_a_max_pool_over_the_whole_image():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("GlobalMaxPool", ["x"], ["g"], name="pool"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1)]
    model = _model(nodes, [_value("x", ["N", 3, 4, 5])], [_value("y", ["N", 2])],
                   [("w", rng.standard_normal((2, 3)))], opset=11)
    graph = _equal_to_onnxruntime(model, rng.standard_normal((2, 3, 4, 5)).astype(np.float32))
    assert _ops(graph) == ["max_pool2d", "flatten", "dense"]


@pytest.mark.parametrize("opset", [6, 8, 13])
def test_a_sum_of_values_is_an_add(opset):
    """Sum, as Caffe2 and old exporters write a residual sum; of one value, that value."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Tanh", ["x"], ["b"]),
             helper.make_node("Sum", ["a", "b", "x"], ["s"], name="sum"),
             helper.make_node("Sum", ["s"], ["y"], name="sum_of_one")]
    model = _model(nodes, [_value("x", ["N", 3, 4, 4])], [_value("y", ["N", 3, 4, 4])],
                   opset=opset)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    graph, params = import_onnx(model)
    assert _ops(graph) == ["relu", "tanh", "add"]
    np.testing.assert_allclose(graphnet.Network(graph, params=params).forward({"x": x})["y"],
                               np.maximum(x, 0) + np.tanh(x) + x, rtol=1e-6, atol=1e-6)


def test_a_sum_of_values_of_different_shapes_is_refused():
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("Sum", ["x", "p"], ["y"], name="sum")]
    message = _refusal(_model(nodes, [_value("x", ["N", 3, 4, 4])],
                              [_value("y", ["N", 3, 4, 4])], opset=9))
    assert "node 'sum', field 'inputs'" in message and "[3, 4, 4] and [3, 3, 3]" in message


@pytest.mark.parametrize("opset", [6, 11])
def test_a_clip_without_bounds_is_the_value_itself(opset):
    nodes = [helper.make_node("Clip", ["x"], ["c"], name="clip"),
             helper.make_node("Relu", ["c"], ["y"])]
    graph, _ = import_onnx(_model(nodes, [_value("x", ["N", 3])], [_value("y", ["N", 3])],
                                  opset=opset))
    assert _ops(graph) == ["relu"]


def test_a_constant_broadcast_from_an_axis_before_opset_7_is_one_per_channel():
    """Opset 6's ``broadcast = 1, axis = 1``: a (C,) constant lines up with the channels, not,
    as from opset 7 on, with the last axis (onnxruntime runs no opset 6: numpy is the
    reference)."""
    rng = np.random.default_rng(0)
    weight, term, factor = rng.standard_normal((3, 2, 1, 1)), rng.standard_normal(3), \
        rng.standard_normal(3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "term"], ["a"], broadcast=1, axis=1),
             helper.make_node("Mul", ["a", "factor"], ["y"], broadcast=1, axis=1)]
    model = _model(nodes, [_value("x", ["N", 2, 3, 3])], [_value("y", ["N", 3, 3, 3])],
                   [("w", weight), ("term", term), ("factor", factor)], opset=6)
    x = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    graph, params = import_onnx(model)
    expected = (np.einsum("oi,nihw->nohw", weight[:, :, 0, 0], x) + term[:, None, None]) \
        * factor[:, None, None]
    assert _ops(graph) == ["conv2d"]
    np.testing.assert_allclose(graphnet.Network(graph, params=params).forward({"x": x})["y"],
                               expected, rtol=1e-5, atol=1e-5)


def test_a_batch_norm_with_spatial_0_over_features_imports():
    """Statistics per activation (opsets 7-8) over a vector of features are per feature, as
    MXNet and Caffe2 write a BatchNorm1d; over an image they would be per pixel: refused."""
    rng = np.random.default_rng(0)
    statistics = [(name, rng.standard_normal(3)) for name in ("scale", "bias", "mean")]
    statistics.append(("var", rng.random(3) + 0.5))
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
                            name="bn", spatial=0)
    model = _model([node], [_value("x", ["N", 3])], [_value("y", ["N", 3])], statistics,
                   opset=7)
    assert _ops(_equal_to_onnxruntime(model, rng.standard_normal((2, 3)).astype(np.float32))) \
        == ["batch_norm"]
    message = _refusal(_batch_norm_model(7, spatial=0))
    assert "node 'bn', field 'spatial'" in message and "[3, 4, 4]" in message


def test_batch_norm_statistics_of_another_size_than_the_channels_are_refused():
    node = helper.make_node("BatchNormalization", ["x", "four", "four", "four", "four"], ["y"],
                            name="bn")
    message = _refusal(_model([node], [_value("x", ["N", 3, 4, 4])],
                              [_value("y", ["N", 3, 4, 4])], [("four", np.ones(4))], opset=9))
    assert "node 'bn', field 'input 2'" in message and "expected 3 values" in message


def test_a_concat_of_one_value_is_that_value():
    nodes = [helper.make_node("Concat", ["x"], ["c"], name="concat", axis=1),
             helper.make_node("Relu", ["c"], ["y"])]
    graph, _ = import_onnx(_model(nodes, [_value("x", ["N", 3, 4, 4])],
                                  [_value("y", ["N", 3, 4, 4])], opset=9))
    assert _ops(graph) == ["relu"]


@pytest.mark.parametrize("batch,channels", [(1, 3), ("N", 1)])
def test_a_squeeze_without_axes_that_would_remove_the_batch_or_channels_is_refused(batch,
                                                                                     channels):
    """Squeeze without axes (PyTorch's ``x.squeeze()``) removes every axis of size 1:
    onnxruntime gives (C,) for a model of batch 1, graphnet's flatten (1, C)."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Squeeze", ["g"], ["y"], name="squeeze")]
    squeezed = [channels] if batch == 1 else [batch]
    model = _model(nodes, [_value("x", [batch, channels, 4, 4])], [_value("y", squeezed)],
                   opset=11)
    message = _refusal(model)
    assert "node 'squeeze', field 'axes'" in message
    assert f"shape [{batch!r}, {channels}, 1, 1]".replace("'", "") in message


def test_a_squeeze_without_axes_of_a_batch_left_open_imports_with_a_note():
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Squeeze", ["g"], ["y"], name="squeeze")]
    imported = import_spec(_model(nodes, [_value("x", ["N", 3, 4, 4])],
                                  [_value("y", ["N", 3])], opset=11))
    assert any("Squeeze 'squeeze' has no axes" in note for note in imported.notes)


# --- malformed attributes and constants: the importer's message, never a traceback ------------
# onnx's checker checks types, not values: an axis out of range, a Reshape's two -1s, a Slice's
# step 0 pass it. Each is refused naming the node and field, and `graphnet import` exits 2; the
# valid corners of the same checks (negative axes, indices and steps, a Reshape's 0 and -1)
# import as onnxruntime runs them.
CONSTANT_SHAPE = (2, 3, 4)
"""The shape of ``c``, the constant the folded ops read."""


def _ints(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def _floats(name, values):
    return numpy_helper.from_array(np.asarray(values, np.float32), name)


def _malformed_model(nodes, initializers, *, opset=17, input_shape=("N", 3, 4, 4)):
    graph = helper.make_graph(nodes, "malformed", [_value("x", list(input_shape))],
                              [_value("y", ["N", "a", "b", "c"])], initializers)
    return helper.make_model(graph,
                             opset_imports=[helper.make_operatorsetid("", opset)])


def _folded(op_type, inputs, initializers=(), *, opset=17, **attributes):
    """An ``op_type`` node named ``bad`` over constants (``c`` of :data:`CONSTANT_SHAPE`),
    folded on import, whose output is added to the input."""
    nodes = [helper.make_node(op_type, inputs, ["f"], name="bad", **attributes),
             helper.make_node("Add", ["x", "f"], ["y"], name="add")]
    return _malformed_model(nodes, [_floats("c", np.ones(CONSTANT_SHAPE)), *initializers],
                            opset=opset)


def _converted(op_type, inputs, initializers=(), *, opset=17, then=(), input_shape=None,
               **attributes):
    """An ``op_type`` node named ``bad`` over the input ``x``, converted on import (``then``:
    the nodes reading its output ``b``, else it is the output)."""
    output = "b" if then else "y"
    nodes = [helper.make_node(op_type, ["x", *inputs], [output], name="bad", **attributes),
             *then]
    return _malformed_model(nodes, list(initializers), opset=opset,
                            **({"input_shape": input_shape} if input_shape else {}))


_CONV_AFTER = (helper.make_node("Conv", ["b", "w"], ["y"], name="conv"),)
_CONV_WEIGHT = _floats("w", np.ones((2, 3, 3, 3)))

MALFORMED = {
    # id: (model, the field named, a part of the message)
    "reshape-two-minus-ones": (_folded("Reshape", ["c", "t"], [_ints("t", [-1, -1, 4])]),
                               "input 2", "negative but for one -1"),
    "reshape-negative-size": (_folded("Reshape", ["c", "t"], [_ints("t", [-2, 12])]),
                              "input 2", "negative but for one -1"),
    "reshape-zero-beyond-rank": (_folded("Reshape", ["c", "t"], [_ints("t", [2, 3, 4, 0])]),
                                 "input 2", "where the input has no axis"),
    "reshape-other-size": (_folded("Reshape", ["c", "t"], [_ints("t", [5, 5])]),
                           "input 2", "as many elements as its input"),
    "reshape-minus-one-not-whole": (_folded("Reshape", ["c", "t"], [_ints("t", [5, -1])]),
                                    "input 2", "a whole size"),
    "reshape-allowzero-size-0": (_folded("Reshape", ["c", "t"], [_ints("t", [0, 24])],
                                         allowzero=1), "input 2", "allowzero = 1"),
    "reshape-opset-1-attribute": (_folded("Reshape", ["c"], opset=4, shape=[-1, -1]),
                                  "shape", "negative but for one -1"),
    "slice-step-0": (_folded("Slice", ["c", "s", "e", "a", "st"], [
        _ints("s", [0]), _ints("e", [1]), _ints("a", [0]), _ints("st", [0])]),
        "steps", "must not be 0"),
    "slice-lengths-differ": (_folded("Slice", ["c", "s", "e"], [
        _ints("s", [0, 0]), _ints("e", [1])]), "starts", "must have one length"),
    "slice-axis-out-of-range": (_folded("Slice", ["c", "s", "e", "a"], [
        _ints("s", [0]), _ints("e", [1]), _ints("a", [5])]), "axes", "names no axis"),
    "slice-axis-repeated": (_folded("Slice", ["c", "s", "e", "a"], [
        _ints("s", [0, 0]), _ints("e", [1, 1]), _ints("a", [0, -3])]),
        "axes", "each axis once"),
    "slice-opset-9-attributes": (_folded("Slice", ["c"], opset=9, starts=[0], ends=[1],
                                         axes=[7]), "axes", "names no axis"),
    "gather-index-out-of-range": (_folded("Gather", ["c", "i"], [_ints("i", [2])]),
                                  "input 2", "indices from -2 to 1"),
    "gather-axis-out-of-range": (_folded("Gather", ["c", "i"], [_ints("i", [0])], axis=3),
                                 "axis", "names no axis"),
    "unsqueeze-axis-out-of-range": (_folded("Unsqueeze", ["c", "a"], [_ints("a", [4])]),
                                    "axes", "names no axis"),
    "unsqueeze-axis-repeated": (_folded("Unsqueeze", ["c", "a"], [_ints("a", [0, 0])]),
                                "axes", "each axis once"),
    "squeeze-axis-out-of-range": (_folded("Squeeze", ["c", "a"], [_ints("a", [3])]),
                                  "axes", "names no axis"),
    "squeeze-axis-longer-than-1": (_folded("Squeeze", ["c", "a"], [_ints("a", [1])]),
                                   "axes", "axes of size 1 only"),
    "squeeze-converted-axes-out-of-range": (
        _converted("Squeeze", ["a"], [_ints("a", [6, 7])], input_shape=("N", 3, 1, 1)),
        "axes", "names no axis"),
    "concat-axis-out-of-range": (_folded("Concat", ["c", "c"], axis=3), "axis",
                                 "names no axis"),
    "concat-ranks-differ": (_folded("Concat", ["c", "d"], [_floats("d", np.ones((3, 4)))],
                                    axis=0), "inputs", "one shape but along its axis"),
    "concat-shapes-differ": (_folded("Concat", ["c", "d"], [_floats("d", np.ones((2, 2, 4)))],
                                     axis=0), "inputs", "one shape but along its axis"),
    "concat-converted-axis-out-of-range": (_converted("Concat", ["x"], axis=5), "axis",
                                           "names no axis"),
    "expand-shapes-do-not-broadcast": (_folded("Expand", ["c", "s"], [_ints("s", [5, 4])]),
                                       "input 2", "must broadcast"),
    "flatten-axis-out-of-range": (_converted("Flatten", [], axis=9), "axis", "names no axis"),
    "flatten-axis-wrapping-to-1": (_converted("Flatten", [], axis=-7), "axis", "names no axis"),
    "pad-too-few-pads": (_converted("Pad", ["p"], [_ints("p", [0, 0, 1]), _CONV_WEIGHT],
                                    then=_CONV_AFTER), "pads", "expected 8 values"),
    "pad-attribute-too-few-pads": (_converted("Pad", [], [_CONV_WEIGHT], opset=9,
                                              pads=[0, 0, 1], then=_CONV_AFTER),
                                   "pads", "expected 8 values"),
    "pad-pads-not-two-per-axis": (_converted("Pad", ["p", "", "a"], [
        _ints("p", [1, 1, 1, 1]), _ints("a", [2]), _CONV_WEIGHT], opset=18, then=_CONV_AFTER),
        "pads", "expected 2 values"),
    "pad-axis-out-of-range": (_converted("Pad", ["p", "", "a"], [
        _ints("p", [1, 1]), _ints("a", [9]), _CONV_WEIGHT], opset=18, then=_CONV_AFTER),
        "axes", "names no axis"),
    "reduce-mean-axes-out-of-range": (_converted("ReduceMean", [], opset=13, axes=[6, 7]),
                                      "axes", "names no axis"),
    "softmax-axis-out-of-range": (_converted("Softmax", [], axis=4), "axis", "names no axis"),
    "cast-to-string": (_folded("Cast", ["c"], to=TensorProto.STRING), "to",
                       "numeric element type"),
    "cast-to-unknown-type": (_folded("Cast", ["c"], to=999), "to", "numeric element type"),
    "constant-of-shape-negative": (_folded("ConstantOfShape", ["s"], [_ints("s", [2, -3])]),
                                   "input 1", "must not be negative"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_attribute_or_constant_is_refused_naming_node_and_field(case, tmp_path,
                                                                             run_cli):
    # each of these ended in a traceback from numpy or onnx, or imported an axis wrapped to
    # another one (% rank), a -2 read as -1, or slice bounds cut short by zip
    model, field, why = MALFORMED[case]
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    with pytest.raises(SpecError, match=why) as raised:
        import_onnx(path)
    assert f"model.onnx: node 'bad', field '{field}'" in str(raised.value)
    status, _, error = run_cli("import", path, "-o", tmp_path / "net.toml")
    assert status == 2 and f"node 'bad', field '{field}'" in error
    assert "Traceback" not in error


def test_negative_axes_indices_and_steps_and_reshape_zeros_fold_as_onnxruntime_runs_them():
    """A per-channel shift cut from a constant by Gather, Slice, Squeeze, Unsqueeze, Reshape
    and Expand with the axes counted from the end, a factor from ConstantOfShape: both go into
    the conv's weights and bias, as onnxruntime computes them."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gather", ["c", "last"], ["g"], axis=-3),  # (1, 3, 4)
             helper.make_node("Slice", ["g", "three", "minus_five", "minus_one", "minus_two"],
                              ["s"]),  # (1, 3, 2): columns 3 and 1
             helper.make_node("Squeeze", ["s", "minus_three"], ["q"]),  # (3, 2)
             helper.make_node("Slice", ["q", "one", "two", "one"], ["column"]),  # (3, 1)
             helper.make_node("Unsqueeze", ["column", "first_and_last"], ["u"]),  # (1, 3, 1, 1)
             helper.make_node("Reshape", ["u", "target"], ["r"]),  # (1, 3, 1, 1)
             helper.make_node("Expand", ["r", "channels"], ["shift"]),
             helper.make_node("ConstantOfShape", ["channels_shape"], ["factor"],
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Add", ["x", "shift"], ["shifted"]),
             helper.make_node("Mul", ["shifted", "factor"], ["scaled"]),
             helper.make_node("Conv", ["scaled", "w"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "valid", [_value("x", ["N", 3, 4, 4])],
                              [_value("y", ["N", 2, 2, 2])], [
        _floats("c", rng.standard_normal(CONSTANT_SHAPE)),
        _floats("w", rng.standard_normal((2, 3, 3, 3))),
        _ints("last", [-1]), _ints("three", [3]), _ints("minus_five", [-5]),
        _ints("minus_one", [-1]), _ints("minus_two", [-2]), _ints("minus_three", [-3]),
        _ints("one", [1]), _ints("two", [2]), _ints("first_and_last", [0, -1]),
        _ints("target", [0, -1, 1, 0]), _ints("channels", [3, 1, 1]),
        _ints("channels_shape", [3, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])
    _equal_to_onnxruntime(model, rng.standard_normal((2, 3, 4, 4)).astype(np.float32))


def test_a_pad_by_axes_a_concat_and_a_flatten_with_negative_axes_import_as_onnxruntime_runs():
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Pad", ["x", "pads", "", "axes"], ["padded"]),
             helper.make_node("Conv", ["padded", "w"], ["c"], name="conv"),
             helper.make_node("Concat", ["c", "x"], ["joined"], axis=-3),
             helper.make_node("Flatten", ["joined"], ["y"], axis=-3)]
    graph = helper.make_graph(nodes, "valid", [_value("x", ["N", 3, 4, 4])],
                              [_value("y", ["N", 80])], [
        _floats("w", rng.standard_normal((2, 3, 3, 3))), _ints("pads", [1, 1, 1, 1]),
        _ints("axes", [-2, -1])])
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 18)])
    _equal_to_onnxruntime(model, rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
