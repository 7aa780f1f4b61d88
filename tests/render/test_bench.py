"""Rendering of ``graphnet bench`` reports at a fixed width: node names and figures stay whole."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from graphnet import render
from graphnet.render.bench import render_bench

NAMES = ("stem", "stem_relu", "res_conv1", "res_bn", "res_conv2", "wide_1x1", "wide_5x5",
         "dilated_relu", "global_pool")
KERNELS = {"stem": "tiled", "res_conv1": "winograd4", "res_conv2": "taps", "wide_1x1": "tiled"}


def report(with_torch: bool) -> dict:
    node = {"op": "softmax_cross_entropy", "forward_ms": 1.25, "backward_ms": 2.5, "share": 0.1,
            "forward_gflops": 12.0, "backward_gflops": 14.0}
    figures = {"step_ms": 10.0, "images_per_s": 200.0, "inference_ms": 4.0,
               "inference_images_per_s": 500.0, "peak_mib": None}
    result = {"graph": "branching", "batch_size": 2, "threads": 2, "blas": "1 thread",
              "steps": 2, "warmup": 1, "load_average": None, "gemm_gflops": 100.0,
              "outside_nodes_ms": 1.0, "nodes": {name: dict(node) for name in NAMES}, **figures}
    for name, kernel in KERNELS.items():
        result["nodes"][name]["kernel"] = kernel
    if with_torch:
        result.update(torch_version="2.0", ratio={key: 1.0 for key in figures},
                      torch={**figures, "nodes": {name: dict(node) for name in NAMES}})
    return result


@pytest.mark.parametrize("with_torch, width", [(False, 80), (True, 80), (True, 120)])
def test_node_names_and_figures_are_whole_at_the_width(monkeypatch, with_torch, width):
    """Kernels beside their nodes where there is room: at 80 columns PyTorch's figures take
    it (the JSON report still names them)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    monkeypatch.setitem(render._consoles, "out", console)
    render_bench(report(with_torch))
    text = console.export_text()
    table = text[text.index("per node"):]
    for name in NAMES:
        assert f" {name} " in table, (name, table)
    assert table.count(" 1.25 ") == len(NAMES) * (2 if with_torch else 1), table
    shown = not with_torch or width > 80
    for name, kernel in KERNELS.items():  # the kernel each conv node ran, beside it
        line = next(line for line in table.splitlines() if f" {name} " in line)
        assert (f" {kernel} " in line) is shown, (name, table)
    assert not [line for line in table.splitlines() if len(line) > width]


def test_agreement_by_float64_recheck_says_the_float32_difference_is_rounding(monkeypatch):
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    monkeypatch.setitem(render._consoles, "out", console)
    shown = report(with_torch=True)
    shown["agreement"] = {"passed": True, "modes": {"training": {
        "worst": 8.5e-2, "where": "gradient layer4.conv2/weight", "failures": {},
        "float64": {"worst": 6e-14, "where": "gradient layer1.0.bn1/bias"}}}}
    render_bench(shown)
    text = console.export_text()
    assert "agree with PyTorch" in text and "DISAGREE" not in text
    assert ("training: worst relative difference 8.5e-02 (gradient layer4.conv2/weight), "
            "float32 rounding the network amplifies: in float64 6e-14") in text
