"""``graphnet import``, an .onnx file as any command's SPEC, and ``train --init-from``."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphnet  # noqa: E402
from graphnet.checkpoint import load_checkpoint  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def small_classifier(opset: int = 17):
    """A 3×16×16 → 10 classifier as an ONNX model: conv, batch norm, ReLU, global average
    pooling, flatten, Gemm (the shapes dataset's images and classes)."""
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((4, 3, 3, 3)) * 0.3, "b": rng.standard_normal(4) * 0.1,
              "scale": rng.random(4) + 0.5, "shift": rng.standard_normal(4) * 0.1,
              "mean": rng.standard_normal(4) * 0.1, "var": rng.random(4) + 0.5,
              "fc_w": rng.standard_normal((10, 4)) * 0.3, "fc_b": rng.standard_normal(10) * 0.1}
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["c"], name="/features/conv/Conv",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"],
                         name="/features/bn/BatchNormalization"),
        helper.make_node("Relu", ["n"], ["r"], name="/features/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="/fc/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                       ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(a.astype(np.float32), name) for name, a in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)])


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "small.onnx"
    onnx.save(small_classifier(), str(path))
    return path


def _images(count=4):
    return np.random.default_rng(3).standard_normal((count, 3, 16, 16)).astype(np.float32)


def _onnxruntime(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images})[0]


def test_import_writes_a_spec_and_a_checkpoint_that_run_as_onnxruntime(run_cli, model_path,
                                                                       tmp_path):
    spec = tmp_path / "net.toml"
    status, out, err = run_cli("import", model_path, "-o", spec)
    assert status == 0, err
    assert f"wrote {spec}" in out and str(tmp_path / "net.npz") in out
    text = spec.read_text()
    assert 'name = "features.conv"' in text and 'op = "global_avg_pool"' in text
    assert "image = { shape = [3, 16, 16] }" in text and 'logits = "fc"' in text
    graph = graphnet.load(spec)
    network = graphnet.Network(graph)
    network.load_params(load_checkpoint(tmp_path / "net.npz").params)
    images = _images()
    outputs = network.forward({"image": images}, training=False)
    np.testing.assert_allclose(outputs["logits"], _onnxruntime(model_path, images),
                               rtol=1e-5, atol=1e-5)


def test_every_command_taking_a_spec_takes_the_onnx_file(run_cli, model_path, tmp_path):
    status, out, _ = run_cli("inspect", model_path)
    assert status == 0 and "features.conv" in out and "global_avg" in out
    status, out, _ = run_cli("check", model_path)
    assert status == 0 and out.startswith("ok")
    status, out, err = run_cli("gradcheck", model_path)
    assert status == 0, out + err
    status, out, _ = run_cli("export", model_path, "--to", "torch")
    assert status == 0 and "nn.Conv2d" in out
    # a training step needs a loss: these commands get a classifier's
    status, out, err = run_cli("bench", model_path, "--batch-size", "2", "--steps", "1",
                               "--warmup", "0", "--no-memory")
    assert status == 0, err
    status, out, err = run_cli("train", model_path, "--epochs", "1", "--run-dir",
                               tmp_path / "direct", "--dataset-option", "size=16",
                               "--dataset-option", "train_size=30",
                               "--dataset-option", "test_size=20")
    assert status == 0, err
    trained = load_checkpoint(tmp_path / "direct" / "checkpoint.npz").params
    assert set(trained) == set(graphnet.import_onnx(model_path)[1])
    # the model's own weights come with it: a network made from it equals onnxruntime
    graph, _ = graphnet.import_onnx(model_path)
    images = _images()
    outputs = graphnet.Network(graph).forward({"image": images}, training=False)
    np.testing.assert_allclose(outputs["logits"], _onnxruntime(model_path, images),
                               rtol=1e-5, atol=1e-5)


def test_fine_tune_from_the_import_then_eval_and_predict(run_cli, model_path, tmp_path):
    spec, run_dir = tmp_path / "net.toml", tmp_path / "run"
    assert run_cli("import", model_path, "-o", spec, "--add-loss")[0] == 0
    status, out, err = run_cli("eval", spec, "--checkpoint", tmp_path / "net.npz",
                               "--dataset-option", "size=16", "--dataset-option", "test_size=40")
    assert status == 0, err
    status, out, err = run_cli("train", spec, "--init-from", tmp_path / "net.npz", "--epochs", "1",
                               "--dataset-option", "size=16", "--dataset-option", "train_size=60",
                               "--dataset-option", "test_size=20", "--run-dir", run_dir)
    assert status == 0, err
    assert "starting from the parameters in" in out + err
    before = load_checkpoint(tmp_path / "net.npz").params
    after = load_checkpoint(run_dir / "checkpoint.npz")
    assert after.epoch == 1 and set(after.params) == set(before)
    assert not np.allclose(after.params["fc/weight"], before["fc/weight"])
    data = tmp_path / "images.npz"
    np.savez(data, images=np.random.default_rng(4).random((2, 3, 16, 16)).astype(np.float32))
    status, out, err = run_cli("predict", spec, "--checkpoint", tmp_path / "net.npz", data)
    assert status == 0 and out.count("images.npz[") == 2, err


def test_init_from_a_checkpoint_of_another_network_is_refused(run_cli, model_path, tmp_path,
                                                              specs_dir):
    spec = tmp_path / "net.toml"
    assert run_cli("import", model_path, "-o", spec, "--add-loss")[0] == 0
    status, _, err = run_cli("train", specs_dir / "shapes_cnn.toml", "--init-from",
                             tmp_path / "net.npz", "--epochs", "1", "--run-dir", tmp_path / "r",
                             "--dataset-option", "train_size=20", "--dataset-option",
                             "test_size=20")
    assert status == 2
    assert "net.npz" in err and "checkpoint is of a different spec" in err
    status, _, err = run_cli("train", spec, "--init-from", tmp_path / "net.npz", "--resume",
                             "--run-dir", tmp_path / "r")
    assert status == 2 and "not both" in err


def test_external_data_models_load(run_cli, tmp_path):
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(small_classifier(), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "ext" / "model.onnx.data").stat().st_size > 0
    status, out, err = run_cli("import", path, "-o", tmp_path / "ext.toml")
    assert status == 0, err
    images = _images()
    graph, params = graphnet.import_onnx(path)
    outputs = graphnet.Network(graph, params=params).forward({"image": images})
    np.testing.assert_allclose(outputs["logits"], _onnxruntime(path, images), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_model_is_one_clear_error(run_cli, model_path, tmp_path, damage):
    data = model_path.read_bytes()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00\xffnot onnx" * 50,
                        "empty": b""}[damage])
    for command in (["import", broken, "-o", tmp_path / "x.toml"], ["inspect", broken]):
        status, out, err = run_cli(*command)
        assert status == 2
        assert "broken.onnx" in err and "ONNX model" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.toml").exists()


def test_an_unsupported_op_exits_2_naming_node_op_and_opset(run_cli, tmp_path):
    model = small_classifier()
    resize = helper.make_node("Resize", ["image", "", "scales"], ["big"], name="/up/Resize")
    model.graph.node.insert(0, resize)
    model.graph.node[1].input[0] = "big"
    model.graph.initializer.append(numpy_helper.from_array(
        np.array([1, 1, 2, 2], np.float32), "scales"))
    path = tmp_path / "resize.onnx"
    onnx.save(model, str(path))
    status, _, err = run_cli("import", path)
    assert status == 2 and "Traceback" not in err
    assert "node '/up/Resize'" in err and "Resize (opset 17) is not supported" in err
    assert "Conv" in err and "BatchNormalization" in err


def test_import_refuses_what_is_not_a_model_or_a_spec_name(run_cli, model_path, tmp_path):
    status, _, err = run_cli("import", model_path, "-o", tmp_path / "net.yaml")
    assert status == 2 and ".toml or .json" in err
    status, _, err = run_cli("import", tmp_path / "missing.onnx")
    assert status == 2 and "not found" in err


def test_import_never_writes_its_weights_over_a_folder(run_cli, model_path, tmp_path):
    """NET.npz is written beside NET.toml: a folder of that name is refused before anything
    is written (the spec too), naming it."""
    (tmp_path / "net.npz").mkdir()
    status, _, err = run_cli("import", model_path, "-o", tmp_path / "net.toml")
    assert status == 2 and "Traceback" not in err
    assert f"{tmp_path / 'net.npz'}: field '-o': cannot write the output: expected a file " \
           "name, found a directory" in err
    assert not (tmp_path / "net.toml").exists()


def test_a_toml_spec_loads_no_onnx():
    """onnx is an extra: only an .onnx file (or graphnet import) imports it."""
    import subprocess
    import sys
    from pathlib import Path

    spec = Path(__file__).resolve().parents[2] / "specs" / "lenet5.toml"
    code = ("import sys; from graphnet.cli import main; status = main(['inspect', sys.argv[1]]); "
            "print(status, *sorted(sys.modules))")
    output = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True,
                            text=True, check=True).stdout
    status, *modules = output.splitlines()[-1].split()
    assert status == "0"
    assert "onnx" not in modules and "graphnet.onnx_import" not in modules
