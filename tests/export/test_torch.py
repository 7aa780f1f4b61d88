"""The PyTorch translation: outputs and gradients equal graphnet's on every spec in specs/ and on
specs that use every built-in op; the exported file imports and runs; missing translations are
clear errors."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphnet.gradcheck import random_feeds
from graphnet.engine import Network
from graphnet.export import ExportError
from graphnet.export.torch import to_source
from graphnet.graph import load
from graphnet.op import Op
from graphnet.testing import check_agreement, check_torch_export, differences

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILES = sorted(p for p in (ROOT / "specs").iterdir() if p.suffix in (".toml", ".json"))
PRELU = ROOT / "plugins" / "examples" / "prelu.py"

# Every built-in op, with the awkward cases: asymmetric "same" padding (conv with stride 2,
# max pool), groups and dilation, a three-way add, batch norm over channels and over features,
# dense on an image (it flattens), and node names that are not Python identifiers.
EVERY_OP = {
    "graph": {"name": "every op"},
    "inputs": {"image": {"shape": [4, 9, 9]}, "label": {"shape": [], "dtype": "int64"}},
    "nodes": [
        {"name": "conv-1", "op": "conv2d", "inputs": ["image"], "filters": 6, "kernel": 4,
         "stride": 2, "padding": "same"},
        {"name": "class", "op": "batch_norm", "momentum": 0.3, "eps": 1e-3},
        {"name": "forward", "op": "leaky_relu", "slope": 0.1},
        {"name": "grouped", "op": "conv2d", "filters": 6, "kernel": 3, "padding": 2,
         "dilation": 2, "groups": 2, "bias": False},
        {"name": "sum", "op": "add", "inputs": ["forward", "grouped"]},
        {"name": "sig", "op": "sigmoid", "inputs": ["sum"]},
        {"name": "th", "op": "tanh", "inputs": ["sum"]},
        {"name": "cat", "op": "concat", "inputs": ["sig", "th"]},
        {"name": "mp", "op": "max_pool2d", "inputs": ["cat"], "kernel": 2, "padding": "same"},
        {"name": "ap", "op": "avg_pool2d", "inputs": ["cat"], "kernel": 3, "stride": 2,
         "padding": 1},
        {"name": "gap", "op": "global_avg_pool", "inputs": ["ap"]},
        {"name": "flat", "op": "flatten", "inputs": ["ap"]},
        {"name": "fc", "op": "dense", "inputs": ["mp"], "units": 8},
        {"name": "bn1", "op": "batch_norm"},
        {"name": "r", "op": "relu"},
        {"name": "fc2", "op": "dense", "units": 5},
        {"name": "fcg", "op": "dense", "inputs": ["gap"], "units": 5, "bias": False},
        {"name": "fcf", "op": "dense", "inputs": ["flat"], "units": 5},
        {"name": "0logits", "op": "add", "inputs": ["fc2", "fcg", "fcf"]},
        {"name": "probabilities", "op": "softmax"},
        {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["0logits", "label"]},
    ],
    "outputs": {"logits": "0logits", "probabilities": "probabilities", "loss": "loss"},
}
REGRESSION = {
    "graph": {"name": "regression"},
    "inputs": {"x": {"shape": [6]}, "target": {"shape": [3]}},
    "nodes": [
        {"name": "hidden", "op": "dense", "inputs": ["x"], "units": 8},
        {"name": "squash", "op": "tanh"},
        {"name": "drop", "op": "dropout", "rate": 0.3},
        {"name": "out", "op": "dense", "units": 3},
        {"name": "loss", "op": "mse_loss", "inputs": ["out", "target"]},
    ],
    "outputs": {"prediction": "out", "loss": "loss"},
}


# Average pooling's divisors: "same" counts only real pixels (symmetric and asymmetric padding),
# explicit padding counts the zeros unless count_include_pad says otherwise.
AVERAGE_POOLS = {
    "graph": {"name": "average pools"},
    "inputs": {"image": {"shape": [2, 7, 7]}},
    "nodes": [
        {"name": "same_odd", "op": "avg_pool2d", "inputs": ["image"], "kernel": 3, "stride": 1,
         "padding": "same"},
        {"name": "same_even", "op": "avg_pool2d", "inputs": ["image"], "kernel": 2, "stride": 1,
         "padding": "same"},
        {"name": "explicit", "op": "avg_pool2d", "inputs": ["image"], "kernel": 3, "stride": 2,
         "padding": 1, "count_include_pad": False},
        {"name": "padded_zeros", "op": "avg_pool2d", "inputs": ["image"], "kernel": 2,
         "stride": 1, "padding": "same", "count_include_pad": True},
    ],
    "outputs": {name: name for name in ("same_odd", "same_even", "explicit", "padded_zeros")},
}


def test_average_pool_divisors_agree_with_pytorch():
    pytest.importorskip("torch")
    _assert_agree(load(AVERAGE_POOLS))


def _assert_agree(graph, batch_size=4):
    network = Network(graph, seed=3)
    feeds = random_feeds(graph, batch_size, 5, dtype=np.float32)
    report = check_agreement(graph, network, feeds)
    failures = {mode: result.get("failures") for mode, result in report["modes"].items()}
    assert report["passed"], failures
    return report


def test_a_float32_difference_that_float64_removes_is_rounding(monkeypatch):
    """graphnet bench's recheck: ResNet-18's untrained layer4 gradients differ by 8e-2 in
    float32 and 6e-14 in float64; such a network passes, its float32 figure still shown."""
    import graphnet.testing as testing
    graph = load(AVERAGE_POOLS)
    network = Network(graph, seed=3)
    feeds = random_feeds(graph, 2, 5, dtype=np.float32)
    by_dtype = {np.float32: 8e-2, np.float64: 6e-14}
    monkeypatch.setattr(testing, "differences", lambda graph, network, feeds, **_: {
        "gradient layer4/weight": by_dtype[network.dtype.type]})
    assert not check_agreement(graph, network, feeds)["passed"]
    report = check_agreement(graph, network, feeds, exact_recheck=True)
    assert report["passed"]
    assert report["modes"]["eval"]["worst"] == 8e-2
    assert report["modes"]["eval"]["float64"] == {"worst": 6e-14,
                                                  "where": "gradient layer4/weight"}


def test_a_translation_that_computes_otherwise_fails_the_float64_recheck_too(monkeypatch):
    pytest.importorskip("torch")
    import graphnet.testing as testing
    graph = load(AVERAGE_POOLS)
    network = Network(graph, seed=3)
    feeds = random_feeds(graph, 2, 5, dtype=np.float32)
    real_build = testing.build

    def build_with_a_scaled_output(graph, network):
        model = real_build(graph, network)
        forward = model.module.forward
        model.module.forward = lambda *inputs: {name: value * 1.001 for name, value
                                               in forward(*inputs).items()}
        return model

    monkeypatch.setattr(testing, "build", build_with_a_scaled_output)
    report = check_agreement(graph, network, feeds, exact_recheck=True)
    assert not report["passed"]
    assert "float64" not in report["modes"]["eval"]
    assert report["modes"]["eval"]["failures"]


def test_every_builtin_op_translates_itself(builtin_ops, assert_generic):
    for name, op_class in builtin_ops.items():
        assert op_class.to_torch is not Op.to_torch, name
    assert_generic("torch.py")


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_translation_agrees_on_every_spec(path, load_for_running):
    pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    report = _assert_agree(load_for_running(path))
    assert "worst" in report["modes"]["eval"]  # dropout (eval) and batch norm are compared


def test_translation_agrees_on_every_op_in_both_modes():
    pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    report = _assert_agree(load(EVERY_OP))
    # batch norm in training: batch statistics, gradients and the running statistics
    assert "worst" in report["modes"]["training"]
    training = differences(load(EVERY_OP), Network(load(EVERY_OP)),
                           random_feeds(load(EVERY_OP), 4, dtype=np.float32), training=True)
    assert "state class/running_var" in training and "state bn1/running_mean" in training
    assert "gradient grouped/weight" in training and "gradient conv-1/weight" in training


def test_dropout_is_compared_in_eval_mode_only():
    pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    report = _assert_agree(load(REGRESSION))
    assert "skipped" in report["modes"]["training"]
    assert report["modes"]["eval"]["where"]


def test_source_needs_no_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from graphnet.graph import load\n"
            "from graphnet.export.torch import to_source\n"
            f"print(len(to_source(load({str(ROOT / 'specs' / 'classic.toml')!r}))))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert int(completed.stdout) > 0


def test_export_writes_a_module_that_imports_and_runs(run_cli, tmp_path, write_spec):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    spec = write_spec(EVERY_OP)
    target = tmp_path / "every_op.py"
    status, out, err = run_cli("export", spec, "--to", "torch", "-o", target)
    assert status == 0, err
    module_spec = importlib.util.spec_from_file_location("every_op_export", target)
    exported = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(exported)
    model = exported.EveryOp()
    graph = load(spec)
    network = Network(graph)
    exported.load_graphnet_params(model, network.flat_params())
    model.eval()
    feeds = random_feeds(graph, 3, dtype=np.float32)
    ours = network.forward(feeds)
    with torch.no_grad():
        theirs = model(torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["label"]))
        without_label = model(torch.from_numpy(feeds["image"]))
    assert set(theirs) == {"logits", "probabilities", "loss"}
    assert set(without_label) == {"logits", "probabilities"}  # the loss needs the label
    np.testing.assert_allclose(theirs["logits"].numpy(), ours["logits"], rtol=1e-4, atol=1e-5)


def test_export_prints_the_source_without_o(run_cli, specs_dir):
    status, out, err = run_cli("export", specs_dir / "lenet5.toml", "--to", "torch")
    assert status == 0, err
    assert "class Lenet5(nn.Module):" in out and "def forward(self, image, label=None):" in out
    compile(out, "lenet5_export.py", "exec")


def test_a_users_op_exports_through_its_own_to_torch():
    pytest.importorskip("torch")
    check_torch_export("prelu", [(3, 5, 5)], {"initial_slope": 0.1}, plugins=[PRELU])
    check_torch_export("prelu", [(4,)], plugins=[PRELU])
    graph = load({"graph": {"name": "with prelu"},
                  "inputs": {"image": {"shape": [2, 6, 6]},
                             "label": {"shape": [], "dtype": "int64"}},
                  "nodes": [{"name": "conv", "op": "conv2d", "inputs": ["image"], "filters": 3,
                             "kernel": 3},
                            {"name": "act", "op": "prelu"},
                            {"name": "fc", "op": "dense", "units": 4},
                            {"name": "loss", "op": "softmax_cross_entropy",
                             "inputs": ["fc", "label"]}],
                  "outputs": {"logits": "fc", "loss": "loss"}}, plugins=[PRELU])
    _assert_agree(graph)
    assert "gradient act/slope" in differences(
        graph, Network(graph), random_feeds(graph, 4, dtype=np.float32), training=True)


def test_a_wrong_translation_fails_the_check(tmp_path):
    pytest.importorskip("torch")
    plugin = tmp_path / "wrong.py"
    plugin.write_text(PRELU.read_text().replace('"prelu"', '"wrong_prelu"')
                      .replace('f"{names.layer}({names.inputs[0]})"',
                               'f"{names.layer}({names.inputs[0]}) * 2"'))
    with pytest.raises(AssertionError, match="'wrong_prelu'.*output output"):
        check_torch_export("wrong_prelu", [(3, 5, 5)], plugins=[plugin])


def _export_prelu_variant(run_cli, prelu_variant, op_name, *edits):
    """Export to PyTorch a one-node spec of a variant of the PReLU example (see the
    ``prelu_variant`` fixture): (spec path, plugin path, exit status, stderr)."""
    spec, plugin = prelu_variant(op_name, *edits)
    status, out, err = run_cli("export", spec, "--to", "torch", "--plugin", plugin)
    return spec, plugin, status, err


def test_an_op_without_translation_names_node_and_op(run_cli, prelu_variant):
    spec, plugin, status, err = _export_prelu_variant(
        run_cli, prelu_variant, "untranslated", ("def to_torch(", "def _not_to_torch("))
    assert status == 2
    assert "learned_slope" in err and "'untranslated'" in err and "no PyTorch translation" in err
    assert "to_torch" in err and "Traceback" not in err
    with pytest.raises(ExportError):
        to_source(load(spec, plugins=[plugin]))


def test_a_to_torch_that_raises_is_named_without_a_traceback(run_cli, prelu_variant):
    _, _, status, err = _export_prelu_variant(
        run_cli, prelu_variant, "raising", ('f"nn.PReLU({channels}', 'f"nn.PReLU({1 / 0}'))
    assert status == 2 and "Traceback" not in err
    assert "learned_slope" in err and "to_torch of op 'raising'" in err
    assert "ZeroDivisionError" in err


def test_hostile_names_stay_inside_string_literals():
    spec = json.loads(json.dumps(REGRESSION))
    spec["graph"]["name"] = 'x"""; import os  # \\'
    spec["graph"]["description"] = 'evil """\nimport os'
    source = to_source(load(spec))
    compile(source, "hostile.py", "exec")
    assert "\nimport os" not in source


def test_layer_names_avoid_nn_module_members():
    nn = pytest.importorskip("torch.nn", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    from graphnet.export.torch import NN_MODULE_MEMBERS
    public = {name for name in dir(nn.Module) if not name.startswith("_")}
    assert public <= NN_MODULE_MEMBERS | {"in_features", "out_features"}, \
        public - NN_MODULE_MEMBERS
