"""``graphnet bench``: it runs at a tiny size and reports the documented fields (never timing
assertions: figures depend on the machine)."""
from __future__ import annotations

import json

import pytest

NODE_FIELDS = {"op", "forward_ms", "backward_ms", "share"}
FIGURES = {"step_ms", "images_per_s", "inference_ms", "inference_images_per_s", "peak_mib"}


def _bench(run_cli, spec, *options):
    status, out, err = run_cli("bench", spec, "--batch-size", 2, "--steps", 2, "--warmup", 1,
                               "--format", "json", *options)
    return status, out, err


def test_json_report_has_the_figures(run_cli, specs_dir):
    status, out, err = _bench(run_cli, specs_dir / "lenet5.toml", "--threads", 1)
    assert status == 0, err
    report = json.loads(out)
    assert FIGURES <= set(report)
    assert report["batch_size"] == 2 and report["threads"] == 1
    assert report["peak_mib"] > 0 and report["baseline_mib"] > 0 and report["memory_method"]
    assert set(report["nodes"]) == {"conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                    "flatten", "fc1", "relu3", "fc2", "relu4", "fc3", "loss"}
    for node in report["nodes"].values():
        assert NODE_FIELDS <= set(node)
    assert report["nodes"]["conv2"]["forward_gflops"] > 0 and report["gemm_gflops"] > 0
    assert "torch" not in report and "ratio" not in report
    # the cores other processes kept busy while it ran, where the system says (Linux)
    assert report["other_cores"] is None or report["other_cores"] >= 0
    # which BLAS the products ran on, and with which kernels where it says (OpenBLAS does)
    from threadpoolctl import threadpool_info
    for pool in threadpool_info():
        if pool["user_api"] == "blas" and pool.get("architecture"):
            assert f"{pool['architecture']} kernels" in report["blas"]
    # the ReLUs after the convs and the dense layers run inside them: named, not timed
    fused = {name: node["fused_into"] for name, node in report["nodes"].items()
             if "fused_into" in node}
    assert fused == {"relu1": "conv1", "relu2": "conv2", "relu3": "fc1", "relu4": "fc2"}
    assert report["nodes"]["relu3"]["forward_ms"] is None
    # the kernel each conv ran (the suite pins the defaults: see tests/conftest.py)
    assert {name: node.get("kernel") for name, node in report["nodes"].items()
            if node["op"] == "conv2d"} == {"conv1": "tiled", "conv2": "tiled"}


def test_compare_torch_reports_both_and_the_ratios(run_cli, specs_dir):
    pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    status, out, err = _bench(run_cli, specs_dir / "branching.json", "--compare", "torch")
    assert status == 0, err
    report = json.loads(out)
    assert FIGURES <= set(report["torch"]) and FIGURES <= set(report["ratio"])
    assert report["ratio"]["step_ms"] == pytest.approx(
        report["step_ms"] / report["torch"]["step_ms"])
    assert report["agreement"]["passed"]
    assert "skipped" in report["agreement"]["modes"]["training"]  # dropout is random
    assert report["torch"]["nodes"]["stem"]["forward_ms"] is not None


def test_table_output(run_cli, specs_dir):
    status, out, err = run_cli("bench", specs_dir / "classic.toml", "--batch-size", 2,
                               "--steps", 1, "--warmup", 0, "--no-memory")
    assert status == 0, err
    assert "training step (ms)" in out and "conv1" in out and "GFLOP/s" in out
    status, out, err = run_cli("bench", specs_dir / "lenet5.toml", "--batch-size", 2,
                               "--steps", 1, "--warmup", 0, "--no-memory")
    assert status == 0, err
    assert "in fc1" in out and "in fc2" in out


def test_a_graph_without_loss_is_refused(run_cli, specs_dir):
    status, out, err = run_cli("bench", specs_dir / "curve_detector.toml", "--no-memory")
    assert status == 2 and "needs a loss" in err


def test_bad_arguments(run_cli, specs_dir):
    status, out, err = run_cli("bench", specs_dir / "lenet5.toml", "--steps", 0)
    assert status == 2 and "--steps" in err
