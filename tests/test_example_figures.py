"""The architectures in specs/ inspected against figures computed here by formula, layer by
layer, from the published architectures (not from graphnet's analysis)."""
from __future__ import annotations

import json

import pytest

from graphnet import inspection
from graphnet.graph import load


class Tally:
    """Parameters (trainable), batch-norm state and MACs of a network written as layer calls;
    the receptive field along its main path (Araujo et al.: r += (k−1)·j, start −= p·j,
    j ·= s)."""

    def __init__(self, channels, size):
        self.channels, self.size = channels, size
        self.params = self.state = self.macs = 0
        self.field, self.jump, self.start = 1, 1, 0

    def conv(self, filters, kernel, stride=1, padding=0, groups=1, bias=True, main=True,
             channels=None, size=None):
        channels = self.channels if channels is None else channels
        size = self.size if size is None else size
        out = (size + 2 * padding - kernel) // stride + 1
        weights = filters * channels // groups * kernel * kernel
        self.params += weights + (filters if bias else 0)
        self.macs += out * out * weights
        if main:
            self.window(kernel, stride, padding)
            self.channels, self.size = filters, out
        return out

    def window(self, kernel, stride, padding):
        self.field += (kernel - 1) * self.jump
        self.start -= padding * self.jump
        self.jump *= stride

    def pool(self, kernel, stride, padding=0):
        self.window(kernel, stride, padding)
        self.size = (self.size + 2 * padding - kernel) // stride + 1

    def bn(self, channels=None):
        channels = self.channels if channels is None else channels
        self.params += 2 * channels
        self.state += 2 * channels
        self.macs += channels * self.size * self.size

    def global_pool(self):
        self.macs += self.channels * self.size * self.size
        self.size = None

    def dense(self, units):
        self.params += self.channels * units + units
        self.macs += self.channels * units
        self.channels = units


def resnet18() -> Tally:
    net = Tally(3, 224)
    net.conv(64, 7, 2, 3, bias=False)
    net.bn()
    net.pool(3, 2, 1)
    stages = []
    for filters, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            channels, size = net.channels, net.size
            net.conv(filters, 3, stride if block == 0 else 1, 1, bias=False)
            net.bn()
            net.conv(filters, 3, 1, 1, bias=False)
            net.bn()
            if block == 0 and stride == 2:  # the projection shortcut
                net.conv(filters, 1, stride, 0, bias=False, main=False, channels=channels,
                         size=size)
                net.bn()
        stages.append((net.field, net.jump, net.start))
    net.stages = stages
    net.global_pool()
    net.dense(1000)
    return net


def test_resnet18_matches_the_published_figures(specs_dir):
    graph = load(specs_dir / "resnet18.toml")
    figures = inspection.figures(graph)
    expected = resnet18()
    totals = figures["totals"]
    assert expected.params == 11_689_512  # PyTorch's count, by formula
    assert totals["trainable_params"] == 11_689_512
    assert totals["non_trainable"] == 0
    assert totals["state"] == expected.state == 9_600
    assert totals["params"] == 11_689_512 + 9_600
    assert totals["macs"] == expected.macs
    assert expected.stages[-1] == (435, 32, -217)
    layer4 = next(row for row in figures["blocks"] if row["name"] == "layer4")
    assert layer4["receptive_field"] == {"size": [435, 435], "jump": [32, 32],
                                         "start": [-217, -217]}
    assert layer4["output_shape"] == [512, 7, 7]
    # every node by its full name, and each block instance with its totals
    names = [row["name"] for row in figures["nodes"]]
    assert "layer1.0.conv1" in names and "layer1.1.out" in names and "layer4_down.proj" in names
    layer1 = next(row for row in figures["blocks"] if row["name"] == "layer1")
    assert layer1["repeat"] == 2 and layer1["nodes"] == 14
    assert layer1["params"] == layer1["trainable_params"] + 4 * 2 * 64  # + running stats
    assert layer1["trainable_params"] == 2 * (2 * 64 * 64 * 9 + 2 * 2 * 64)
    fields = {row["name"]: row["receptive_field"]["size"][0] for row in figures["blocks"]}
    assert [fields[f"layer{i}"] for i in (1, 2, 3, 4)] == [s[0] for s in expected.stages]


def test_resnet18_json_through_the_cli(specs_dir, run_cli):
    status, out, err = run_cli("inspect", specs_dir / "resnet18.toml", "--format", "json")
    assert status == 0, err
    data = json.loads(out)
    assert data["totals"]["trainable_params"] == 11_689_512
    assert data["totals"]["non_trainable"] == 0
    assert len(data["nodes"]) == 71  # 2 inputs and 69 op nodes
    assert next(n for n in data["nodes"] if n["name"] == "layer2.conv1")["block"] == "layer2"


def cifar_resnet() -> Tally:
    net = Tally(3, 32)
    net.conv(16, 3, 1, 1, bias=False)
    net.bn()
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        channels, size = net.channels, net.size
        net.conv(filters, 3, stride, 1, bias=False)
        net.bn()
        net.conv(filters, 3, 1, 1, bias=False)
        net.bn()
        if stride == 2:
            net.conv(filters, 1, stride, 0, bias=False, main=False, channels=channels, size=size)
            net.bn()
    net.global_pool()
    net.dense(10)
    return net


def vgg11() -> Tally:
    net = Tally(3, 32)
    for filters, convs in ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2)):
        for _ in range(convs):
            net.conv(filters, 3, 1, 1)
        net.pool(2, 2)
    net.dense(10)
    return net


def mobilenet_v2() -> Tally:
    net = Tally(3, 32)
    net.conv(16, 3, 1, 1, bias=False)
    net.bn()
    for filters, stride in ((16, 1), (16, 1), (24, 2), (24, 1), (32, 2), (32, 1)):
        wide = net.channels * 4
        net.conv(wide, 1, bias=False)
        net.bn()
        net.conv(wide, 3, stride, 1, groups=wide, bias=False)
        net.bn()
        net.conv(filters, 1, bias=False)
        net.bn()
    net.conv(128, 1, bias=False)
    net.bn()
    net.global_pool()
    net.dense(10)
    return net


def inception() -> Tally:
    net = Tally(3, 32)
    net.conv(32, 3, 1, 1)
    net.pool(2, 2)

    def block(c1, c3r, c3, c5r, c5, pool_proj):
        channels = net.channels
        net.conv(c1, 1, main=False)
        net.conv(c3r, 1, main=False)
        net.conv(c3, 3, 1, 1, main=False, channels=c3r)
        net.conv(c5r, 1, main=False)
        net.conv(c5, 5, 1, 2, main=False, channels=c5r)
        net.conv(pool_proj, 1, main=False)
        net.window(5, 1, 2)  # the widest branch sets the field
        net.channels = c1 + c3 + c5 + pool_proj
        return channels

    block(16, 16, 24, 4, 8, 8)
    block(16, 16, 24, 4, 8, 8)
    net.pool(2, 2)
    block(32, 24, 40, 8, 12, 12)
    net.global_pool()
    net.dense(10)
    return net


@pytest.mark.parametrize("name, tally, field", [
    ("cifar_resnet", cifar_resnet, (25, 4, -12)),
    ("vgg11", vgg11, None),
    ("mobilenet_v2", mobilenet_v2, None),
    ("inception", inception, None),
])
def test_the_other_architectures_match_their_formulas(specs_dir, name, tally, field):
    graph = load(specs_dir / f"{name}.toml")
    figures = inspection.figures(graph)
    expected = tally()
    assert figures["totals"]["trainable_params"] == expected.params
    assert figures["totals"]["state"] == expected.state
    assert figures["totals"]["macs"] == expected.macs
    before_pool = [row for row in figures["nodes"] if row["receptive_field"] is not None][-1]
    size, jump, start = field or (expected.field, expected.jump, expected.start)
    assert before_pool["receptive_field"] == {"size": [size, size], "jump": [jump, jump],
                                              "start": [start, start]}
