"""The ONNX export: every spec in specs/ exported, checked by onnx.checker (full check) and run in
onnxruntime with graphnet's outputs; the inference graph only, named as the spec; parameters from
a checkpoint or a seed; ops without a translation and a missing onnx are clear errors."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (the onnx extra, part of the "
                           "test extra)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the test extra)")

from onnx import numpy_helper  # noqa: E402

from graphnet.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from graphnet.engine import Network  # noqa: E402
from graphnet.export import ExportError  # noqa: E402
from graphnet.export.onnx import BATCH_AXIS, IR_VERSION, OPSET, export_onnx, to_model  # noqa: E402
from graphnet.gradcheck import random_feeds  # noqa: E402
from graphnet.graph import load  # noqa: E402
from graphnet.op import Op  # noqa: E402
from graphnet.testing import (TOLERANCE, check_onnx_export, moved_state,  # noqa: E402
                              onnx_differences, run_onnx)

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILES = sorted(p for p in (ROOT / "specs").iterdir() if p.suffix in (".toml", ".json"))
PRELU = ROOT / "plugins" / "examples" / "prelu.py"

# What the export must get right beyond the example specs: dense and conv without bias, dense
# on an image (Flatten first), a three-way add, batch norm over features, softmax over the
# channels of an image, dropout feeding an output (no node: the output is its input), two
# outputs of one node, names ONNX must keep as they are, and a loss and its label left out.
EDGES = {
    "graph": {"name": "export edges", "description": "edge cases of the ONNX export"},
    "inputs": {"image": {"shape": [3, 8, 8]}, "label": {"shape": [], "dtype": "int64"}},
    "nodes": [
        {"name": "conv/1", "op": "conv2d", "inputs": ["image"], "filters": 4, "kernel": 3,
         "stride": 2, "padding": "same", "bias": False},
        {"name": "bn", "op": "batch_norm", "eps": 1e-3},
        {"name": "act", "op": "leaky_relu", "slope": 0.2},
        {"name": "gconv", "op": "conv2d", "filters": 4, "kernel": [3, 1], "padding": [2, 0],
         "dilation": [2, 1], "groups": 2},
        {"name": "sum", "op": "add", "inputs": ["act", "gconv", "act"]},
        {"name": "map", "op": "softmax", "inputs": ["sum"]},
        {"name": "avg", "op": "avg_pool2d", "inputs": ["sum"], "kernel": 2, "padding": "same",
         "stride": 1},
        {"name": "cat", "op": "concat", "inputs": ["avg", "map"]},
        {"name": "gap", "op": "global_avg_pool"},
        {"name": "fc_img", "op": "dense", "inputs": ["cat"], "units": 6, "bias": False},
        {"name": "bn1d", "op": "batch_norm"},
        {"name": "th", "op": "tanh"},
        {"name": "drop", "op": "dropout", "rate": 0.4},
        {"name": "0 logits", "op": "add", "inputs": ["drop", "drop"]},
        {"name": "probs", "op": "softmax"},
        {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["0 logits", "label"]},
    ],
    "outputs": {"logits": "0 logits", "scores": "0 logits", "features": "drop",
                "pooled": "gap", "probabilities": "probs", "loss": "loss"},
}


def _exported(network, path):
    """Export to ``path``, read it back with onnx's loader and check it in full."""
    export_onnx(network, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model


def _assert_agrees(network, model, batch_size=2):
    feeds = random_feeds(network.graph, batch_size, 7, dtype=np.float32)
    found = onnx_differences(network, feeds, model)
    assert found and all(value <= TOLERANCE["output"] for value in found.values()), found
    return found


def _assert_exports_and_agrees(graph, path):
    network = moved_state(Network(graph, seed=0))
    model = _exported(network, path)
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    # the inference graph, named as the spec: the image in, the non-loss outputs out
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == [
        name for name, target in graph.outputs.items() if not graph.nodes[target].is_loss]
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_param == BATCH_AXIS
    _assert_agrees(network, model)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_every_spec_exports_checks_and_runs_with_graphnets_outputs(path, tmp_path,
                                                                    load_for_running):
    # the big specs in their small variants (same structure): ResNet-18 took 5 s at full size
    _assert_exports_and_agrees(load_for_running(path), tmp_path / "net.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_every_spec_exports_at_full_size(path, tmp_path):
    _assert_exports_and_agrees(load(path), tmp_path / "net.onnx")


def test_the_edges_export_as_the_inference_graph(tmp_path):
    graph = load(EDGES)
    network = moved_state(Network(graph, seed=3))
    model = _exported(network, tmp_path / "edges.onnx")
    assert [i.name for i in model.graph.input] == ["image"]  # no label
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
               for o in model.graph.output}
    assert outputs == {"logits": ["N", 6], "scores": ["N", 6], "features": ["N", 6],
                       "pooled": ["N", 8], "probabilities": ["N", 6]}
    op_types = [node.op_type for node in model.graph.node]
    assert "Dropout" not in op_types and op_types.count("BatchNormalization") == 2
    assert op_types.count("Add") == 3  # a three-way sum is two binary adds, plus drop + drop
    assert {"GlobalAveragePool", "Flatten", "Gemm", "Softmax", "Concat"} <= set(op_types)
    by_name = {node.name: node for node in model.graph.node}
    assert by_name["fc_img"].op_type == "Flatten" and by_name["fc_img/Gemm"].op_type == "Gemm"
    gemm_attributes = {a.name: onnx.helper.get_attribute_value(a)
                       for a in by_name["fc_img/Gemm"].attribute}
    assert gemm_attributes == {"transB": 1}
    softmax_axes = [onnx.helper.get_attribute_value(a) for node in model.graph.node
                    if node.op_type == "Softmax" for a in node.attribute]
    assert softmax_axes == [1, 1]  # over an image's channels and over the class scores
    found = _assert_agrees(network, model, batch_size=3)
    assert set(found) == set(outputs)
    # parameters by their graphnet names, the running statistics among them
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert "conv/1/bias" not in initializers
    for key, array in network.flat_params().items():
        np.testing.assert_array_equal(initializers[key], array)


def test_a_spec_naming_only_its_loss_exports_the_sinks_below_it(tmp_path):
    spec = {"graph": {"name": "loss only"},
            "inputs": {"x": {"shape": [5]}, "target": {"shape": [2]}},
            "nodes": [{"name": "hidden", "op": "dense", "inputs": ["x"], "units": 4},
                      {"name": "side", "op": "sigmoid"},
                      {"name": "out", "op": "dense", "inputs": ["hidden"], "units": 2},
                      {"name": "loss", "op": "mse_loss", "inputs": ["out", "target"]}]}
    network = Network(load(spec))
    model = _exported(network, tmp_path / "sinks.onnx")
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["side", "out"]
    assert "mse" not in str(model.graph).lower()
    _assert_agrees(network, model)


def test_a_graph_of_losses_alone_has_nothing_to_export():
    spec = {"graph": {"name": "just a loss"},
            "inputs": {"y": {"shape": [2]}, "target": {"shape": [2]}},
            "nodes": [{"name": "loss", "op": "mse_loss", "inputs": ["y", "target"]}]}
    with pytest.raises(ExportError, match="nothing to export"):
        to_model(Network(load(spec)))


def test_every_builtin_op_but_the_losses_translates_itself(builtin_ops, assert_generic):
    for name, op_class in builtin_ops.items():
        assert op_class.is_loss or op_class.to_onnx is not Op.to_onnx, name
    assert_generic("onnx.py")
    # and op modules never import onnx: it is an optional extra
    for plugin in [*(ROOT / "plugins").glob("*.py"), PRELU, ROOT / "graphnet" / "op.py"]:
        assert "import onnx" not in plugin.read_text(), plugin


def test_the_example_plugin_exports_through_its_own_to_onnx(tmp_path):
    report = check_onnx_export("prelu", [(3, 5, 5)], {"initial_slope": 0.1}, plugins=[PRELU])
    assert report["nodes"] == ["PRelu"] and report["difference"] <= report["tolerance"]
    assert check_onnx_export("prelu", [(4,)], plugins=[PRELU])["nodes"] == ["PRelu"]


def test_check_onnx_export_catches_a_wrong_translation(tmp_path):
    plugin = tmp_path / "wrong.py"
    plugin.write_text(PRELU.read_text().replace('"prelu"', '"wrong_prelu"')
                      .replace('add_node("PRelu"', 'add_node("LeakyRelu"')
                      .replace('[builder.inputs[0], slope]', '[builder.inputs[0]]'))
    with pytest.raises(AssertionError, match="'wrong_prelu'.*differs"):
        check_onnx_export("wrong_prelu", [(3, 5, 5)], plugins=[plugin])


SCALE_PLUGIN = '''
import numpy as np
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr, Op


class Scale(Op):
    """Multiply by a constant factor, then add the channel's index."""
    name = "scale"
    attrs = {"factor": Attr("float", default=2.0)}

    def shape(self, input_shapes, attrs):
        return input_shapes[0]

    def forward(self, inputs, params, attrs, ctx):
        offset = np.arange(inputs[0].shape[1], dtype=inputs[0].dtype).reshape(1, -1, 1, 1)
        return inputs[0] * attrs.factor + offset, None

    def backward(self, grad_output, saved, params, attrs, ctx):
        return [grad_output * attrs.factor], {}

    def to_onnx(self, input_shapes, attrs, builder):
        factor = builder.constant(np.float64(attrs.factor), "factor")  # float32 in the model
        offset = builder.constant(np.arange(input_shapes[0][0]).reshape(-1, 1, 1), "offset")
        scaled = builder.add_node("Mul", [builder.inputs[0], factor], builder.fresh("scaled"))
        offset = builder.add_node("Cast", [offset], to=1)  # int64 constant to float
        return builder.add_node("Add", [scaled, offset], builder.output)


@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(Scale)
'''


def test_a_plugin_op_builds_several_nodes_and_constants(tmp_path):
    plugin = tmp_path / "scale.py"
    plugin.write_text(SCALE_PLUGIN)
    report = check_onnx_export("scale", [(3, 4, 4)], {"factor": 0.5}, plugins=[plugin])
    assert report["nodes"] == ["Mul", "Cast", "Add"]
    graph = load({"inputs": {"image": {"shape": [3, 4, 4]}},
                  "nodes": [{"name": "s", "op": "scale", "inputs": ["image"]},
                            {"name": "t", "op": "scale"}]}, plugins=[plugin])
    model = to_model(Network(graph))
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert set(constants) == {"s/factor", "s/offset", "t/factor", "t/offset"}
    assert constants["s/factor"].dtype == np.float32 and constants["s/offset"].dtype == np.int64
    assert [n.name for n in model.graph.node] == ["s", "s/Cast", "s/Add", "t", "t/Cast", "t/Add"]
    assert [o.name for o in model.graph.output] == ["output"]
    _assert_agrees(Network(graph), model)


def _export_variant(run_cli, prelu_variant, folder, op_name, *edits):
    """Export to ONNX a one-node spec of a variant of the PReLU example (see the
    ``prelu_variant`` fixture): (exit status, stderr, output path)."""
    spec, plugin = prelu_variant(op_name, *edits)
    target = folder / "user.onnx"
    status, _, err = run_cli("export", spec, "--to", "onnx", "-o", target, "--plugin", plugin)
    return status, err, target


def test_an_op_without_to_onnx_is_named_with_exit_2(run_cli, prelu_variant, tmp_path):
    status, err, target = _export_variant(run_cli, prelu_variant, tmp_path, "untranslated",
                                          ("def to_onnx(", "def _not_to_onnx("))
    assert status == 2 and "Traceback" not in err
    assert "learned_slope" in err and "'untranslated'" in err and "no ONNX translation" in err
    assert "to_onnx" in err and not target.exists()


def test_a_to_onnx_that_raises_or_returns_nonsense_is_named(run_cli, prelu_variant, tmp_path):
    status, err, _ = _export_variant(run_cli, prelu_variant, tmp_path, "raising",
                                     ('builder.param("slope"', '1 / 0 or builder.param("slope"'))
    assert status == 2 and "Traceback" not in err
    assert "learned_slope" in err and "to_onnx of op 'raising'" in err and "ZeroDivision" in err
    status, err, _ = _export_variant(run_cli, prelu_variant, tmp_path, "nameless",
                                     ("return builder.add_node(", "builder.add_node("))
    assert status == 2 and "to_onnx of op 'nameless' returned None" in err
    status, err, _ = _export_variant(run_cli, prelu_variant, tmp_path, "bad_onnx",
                                     ('"PRelu"', '"NoSuchOnnxOp"'))
    assert status == 2 and "ONNX rejects the translation" in err and "Traceback" not in err


def test_cli_writes_the_seeds_initial_parameters_by_default(run_cli, specs_dir, tmp_path):
    graph = load(specs_dir / "lenet5.toml")
    for extra, seed in (((), 0), (("--seed", "3"), 3)):
        target = tmp_path / f"seed{seed}.onnx"
        status, out, err = run_cli("export", specs_dir / "lenet5.toml", "--to", "onnx",
                                   "-o", target, *extra)
        assert status == 0, err
        assert str(target) in out
        initializers = {i.name: numpy_helper.to_array(i)
                        for i in onnx.load(str(target)).graph.initializer}
        expected = Network(graph, seed=seed).flat_params()
        assert initializers.keys() == expected.keys()
        for key, array in expected.items():
            np.testing.assert_array_equal(initializers[key], array)


def test_cli_exports_a_checkpoints_parameters_and_statistics(run_cli, specs_dir, tmp_path):
    graph = load(specs_dir / "shapes_cnn.toml")
    trained = moved_state(Network(graph, seed=11), seed=4)
    path = tmp_path / "trained.npz"
    meta = {"epoch": 2, "class_names": ["circle", "square"],
            "standardise": {"mean": [0.5], "std": [0.25]}}
    save_checkpoint(path, Checkpoint(params=trained.flat_params(), meta=meta))
    target = tmp_path / "trained.onnx"
    status, _, err = run_cli("export", specs_dir / "shapes_cnn.toml", "--to", "onnx", "-o",
                             target, "--checkpoint", path)
    assert status == 0, err
    model = onnx.load(str(target))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for key, array in trained.flat_params().items():
        np.testing.assert_array_equal(initializers[key], array)
    properties = {p.key: p.value for p in model.metadata_props}
    assert properties == {"graphnet.standardise": '{"mean": [0.5], "std": [0.25]}',
                          "graphnet.class_names": '["circle", "square"]'}
    feeds = random_feeds(graph, 2, 1, dtype=np.float32)
    np.testing.assert_allclose(run_onnx(model, feeds)["logits"],
                               trained.forward(feeds)["logits"], rtol=1e-4, atol=1e-5)
    # a checkpoint of another spec is refused by name, nothing written
    other = tmp_path / "other.onnx"
    status, _, err = run_cli("export", specs_dir / "lenet5.toml", "--to", "onnx", "-o", other,
                             "--checkpoint", path)
    assert status == 2 and "different spec" in err and not other.exists()


@pytest.mark.parametrize("args, words", [
    (("--to", "onnx"), ["-o", "binary"]),
    (("--to", "onnx", "-o", "x.onnx", "--seed", "1", "--checkpoint", "c.npz"), ["--seed"]),
    (("--seed", "1"), ["--seed", "--to onnx"]),
    (("--checkpoint", "c.npz", "-o", "x.py"), ["--checkpoint", "--to onnx"]),
])
def test_cli_refuses_flags_that_do_not_fit(run_cli, specs_dir, tmp_path, monkeypatch, args,
                                           words):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli("export", specs_dir / "lenet5.toml", *args)
    assert status == 2 and "Traceback" not in err
    assert all(word in err for word in words), err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_onnx_names_the_extra_to_install(run_cli, specs_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    target = tmp_path / "net.onnx"
    status, _, err = run_cli("export", specs_dir / "lenet5.toml", "--to", "onnx", "-o", target)
    assert status == 2 and "Traceback" not in err
    assert "graphnet-cnn[onnx]" in err and not target.exists()
    with pytest.raises(ExportError, match=r"graphnet-cnn\[onnx\]"):
        to_model(Network(load(specs_dir / "lenet5.toml")))


def test_export_onnx_is_graphnets_own_name(tmp_path, specs_dir):
    import graphnet

    network = Network(load(specs_dir / "digits.toml"))
    model = graphnet.export_onnx(network, tmp_path / "digits.onnx")
    assert (tmp_path / "digits.onnx").read_bytes() == model.SerializeToString()
