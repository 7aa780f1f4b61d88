"""Optimizers, schedules and clipping against hand computations."""
from __future__ import annotations

import math

import numpy as np
import pytest

from graphnet.errors import CheckpointError, SpecError
from graphnet.optim import clip_by_global_norm, global_norm
from graphnet.registry import build_registry


@pytest.fixture(scope="module")
def registry():
    return build_registry(entry_points=False, environment=False)


@pytest.fixture
def make(registry):
    def build(kind, name, **options):
        return registry.entry(kind, name).value(**options)
    return build


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]
    return weight, grads


def run(optimizer, weight, grads, lr):
    weight = weight.copy()
    for grad in grads:
        optimizer.step([("fc/weight", weight, grad)], lr)
    return weight


def test_builtins_are_registered_through_the_plugin(registry):
    assert {"sgd", "adam"} <= set(registry.names("optimizer"))
    assert {"constant", "step", "cosine"} <= set(registry.names("schedule"))
    assert registry.plugin_of("optimizer", "sgd") == "builtin:optimizers"


def test_plain_sgd_is_exactly_w_minus_lr_grad(make):
    weight, grads = arrays()
    result = run(make("optimizer", "sgd"), weight, grads[:1], 0.1)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, weight - np.float32(0.1) * grads[0])


def test_sgd_momentum_and_nesterov_by_hand(make):
    weight, (g1, g2, _) = arrays()
    w, mu, lr = weight.astype(np.float64), 0.9, 0.1
    v1 = g1
    v2 = mu * v1 + g2
    expected = w - lr * v1 - lr * v2
    got = run(make("optimizer", "sgd", momentum=mu), weight, [g1, g2], lr)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    nesterov = w - lr * (g1 + mu * v1) - lr * (g2 + mu * v2)
    got = run(make("optimizer", "sgd", momentum=mu, nesterov=True), weight, [g1, g2], lr)
    np.testing.assert_allclose(got, nesterov, rtol=1e-6)


def test_weight_decay_adds_l2_to_the_gradient(make):
    weight, (g1, *_) = arrays()
    got = run(make("optimizer", "sgd", weight_decay=0.01), weight, [g1], 0.1)
    np.testing.assert_allclose(got, weight - 0.1 * (g1 + 0.01 * weight), rtol=1e-6)


def test_adam_by_hand(make):
    weight, grads = arrays()
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    w = weight.astype(np.float64)
    m = v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    got = run(make("optimizer", "adam"), weight, grads, lr)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, options", [("sgd", {"momentum": 0.9}), ("adam", {})])
def test_state_dict_resumes_bit_for_bit(make, name, options):
    weight, grads = arrays()
    straight = run(make("optimizer", name, **options), weight, grads, 0.05)
    first = make("optimizer", name, **options)
    halfway = run(first, weight, grads[:1], 0.05)
    state = {key: value.copy() for key, value in first.state_dict().items()}
    second = make("optimizer", name, **options)
    second.load_state_dict(state, params={"fc/weight": halfway})
    np.testing.assert_array_equal(run(second, halfway, grads[1:], 0.05), straight)
    assert second.steps == 3


def test_state_dict_of_another_graph_is_refused(make):
    weight, grads = arrays()
    optimizer = make("optimizer", "sgd", momentum=0.9)
    run(optimizer, weight, grads[:1], 0.1)
    state = optimizer.state_dict()
    with pytest.raises(CheckpointError, match="wrong shape"):
        make("optimizer", "sgd", momentum=0.9).load_state_dict(
            state, params={"fc/weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(CheckpointError, match="does not belong"):
        make("optimizer", "adam").load_state_dict(state)


def test_options_are_checked_with_suggestions(make):
    with pytest.raises(SpecError) as caught:
        make("optimizer", "sgd", momentun=0.9)
    assert caught.value.field == "momentun" and "did you mean 'momentum'" in str(caught.value)
    with pytest.raises(SpecError, match="momentum"):
        make("optimizer", "sgd", momentum=-1.0)


def test_schedules(make):
    constant = make("schedule", "constant", base_lr=0.1, epochs=10, steps_per_epoch=5)
    assert constant.lr_at(0, 0) == constant.lr_at(9, 4) == 0.1
    step = make("schedule", "step", base_lr=0.1, epochs=10, steps_per_epoch=5, step_size=3,
                gamma=0.5)
    assert [step.lr_at(e, 0) for e in (0, 2, 3, 6)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    cosine = make("schedule", "cosine", base_lr=0.1, epochs=2, steps_per_epoch=5, floor=0.01)
    assert cosine.lr_at(0, 0) == pytest.approx(0.1)
    assert cosine.lr_at(1, 0) == pytest.approx(0.055)  # halfway: the mean of base and floor
    assert cosine.lr_at(1, 4) == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    assert cosine.lr_at(1, 4) > 0.01


def test_clip_by_global_norm():
    grads = [np.full((2, 2), 3.0, np.float32), np.full((1,), 4.0, np.float32)]
    triples = [(f"p{i}", np.zeros_like(g), g) for i, g in enumerate(grads)]
    norm = math.sqrt(4 * 9 + 16)
    clipped, before = clip_by_global_norm(triples, 1.0)
    assert before == pytest.approx(norm)
    assert global_norm(g for _, _, g in clipped) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(clipped[0][2], grads[0] / norm, rtol=1e-6)
    assert clipped[0][2].dtype == np.float32
    assert grads[0][0, 0] == 3.0  # the arrays the ops returned are left alone
    unchanged, _ = clip_by_global_norm(triples, 100.0)
    assert unchanged is triples


def test_global_norm_survives_float32_overflow():
    huge = [np.full(4, 1e30, np.float32)]
    assert global_norm(huge) == pytest.approx(2e30)
