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


def test_adam_defaults_to_pytorchs_learning_rate(registry):
    assert registry.entry("optimizer", "adam").value.default_lr == 0.001
    assert registry.entry("optimizer", "adamw").value.default_lr == 0.001
    assert registry.entry("optimizer", "sgd").value.default_lr == 0.01


def test_adamw_decays_the_weights_not_the_gradient(make):
    weight, grads = arrays()
    b1, b2, eps, lr, decay = 0.9, 0.999, 1e-8, 0.01, 0.1
    w = weight.astype(np.float64)
    m = v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        w = w * (1 - lr * decay)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    got = run(make("optimizer", "adamw", weight_decay=decay), weight, grads, lr)
    np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-7)
    l2_adam = run(make("optimizer", "adam", weight_decay=decay), weight, grads, lr)
    assert not np.allclose(l2_adam, got, rtol=1e-4)  # Adam's L2 is a different update


@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.9, False), (0.5, True)])
def test_rmsprop_by_hand(make, momentum, centered):
    weight, grads = arrays()
    alpha, eps, lr = 0.99, 1e-8, 0.01
    w = weight.astype(np.float64)
    square = mean = buffer = np.zeros_like(w)
    for g in grads:
        square = alpha * square + (1 - alpha) * g * g
        mean = alpha * mean + (1 - alpha) * g
        denominator = np.sqrt(square - mean * mean if centered else square) + eps
        if momentum:
            buffer = momentum * buffer + g / denominator
            w = w - lr * buffer
        else:
            w = w - lr * g / denominator
    got = run(make("optimizer", "rmsprop", momentum=momentum, centered=centered), weight, grads,
              lr)
    np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_adagrad_by_hand(make):
    weight, grads = arrays()
    lr, decay, eps = 0.1, 0.5, 1e-10
    w = weight.astype(np.float64)
    total = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        total = total + g * g
        w = w - lr / (1 + (t - 1) * decay) * g / (np.sqrt(total) + eps)
    got = run(make("optimizer", "adagrad", lr_decay=decay), weight, grads, lr)
    np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, options", [("adamw", {}), ("rmsprop", {"momentum": 0.9,
                                                                       "centered": True}),
                                           ("adagrad", {})])
def test_new_optimizers_resume_bit_for_bit(make, name, options):
    test_state_dict_resumes_bit_for_bit(make, name, options)


def test_warmup_scales_any_schedule_linearly(make):
    cosine = make("schedule", "cosine", base_lr=0.1, epochs=4, steps_per_epoch=5,
                  warmup_epochs=1)
    assert [cosine.rate(0, s) for s in range(5)] == pytest.approx(
        [cosine.lr_at(0, s) * (s + 1) / 5 for s in range(5)])
    assert cosine.rate(1, 0) == cosine.lr_at(1, 0)
    assert make("schedule", "constant", base_lr=0.1, epochs=2, steps_per_epoch=5).rate(0, 0) == 0.1


def test_one_cycle_by_hand(make):
    cycle = make("schedule", "one_cycle", base_lr=1.0, epochs=2, steps_per_epoch=5)
    rates = [cycle.rate(e, s) for e in range(2) for s in range(5)]
    assert rates[0] == pytest.approx(1 / 25)         # lr / div_factor
    assert max(rates) == pytest.approx(1.0) and rates.index(max(rates)) == 2  # 0.3·10 − 1
    assert rates[-1] == pytest.approx(1 / 25 / 1e4)  # the first / final_div_factor
    assert rates[3] == pytest.approx(1 / 25 / 1e4 + (1 - 1 / 25 / 1e4) / 2 * (1 + math.cos(
        math.pi / 7)))


def test_plateau_drops_after_patience_and_resumes_its_state(make):
    plateau = make("schedule", "plateau", base_lr=0.1, epochs=20, steps_per_epoch=5, patience=2,
                   factor=0.5)
    losses = [1.0, 0.9, 0.95, 0.92, 0.91, 0.8]
    rates = []
    for epoch, loss in enumerate(losses):
        plateau.observe(epoch, {"val_loss": loss, "train_loss": 0.1})
        rates.append(plateau.rate(epoch + 1, 0))
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    again = make("schedule", "plateau", base_lr=0.1, epochs=20, steps_per_epoch=5, patience=2,
                 factor=0.5)
    again.load_state_dict(plateau.state_dict())
    assert again.rate(7, 0) == 0.05 and again.best == plateau.best
    with pytest.raises(CheckpointError):
        again.load_state_dict({"scale": np.asarray(0.5)})




@pytest.mark.parametrize("name, options, torch_name, torch_options", [
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, "SGD",
     {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("adam", {"weight_decay": 0.01}, "Adam", {"weight_decay": 0.01}),
    ("adamw", {}, "AdamW", {}),
    ("rmsprop", {"momentum": 0.9, "centered": True}, "RMSprop", {"momentum": 0.9,
                                                                 "centered": True}),
    ("adagrad", {"lr_decay": 0.1}, "Adagrad", {"lr_decay": 0.1}),
])
def test_updates_match_torch_optim(make, name, options, torch_name, torch_options):
    torch = pytest.importorskip("torch", reason="the comparison needs PyTorch (the torch extra)")
    weight, grads = arrays()
    weight64 = weight.astype(np.float64)
    grads64 = [g.astype(np.float64) for g in grads]
    ours = run(make("optimizer", name, **options), weight64, grads64, 0.01)
    tensor = torch.nn.Parameter(torch.tensor(weight64))
    theirs = getattr(torch.optim, torch_name)([tensor], lr=0.01, **torch_options)
    for g in grads64:
        tensor.grad = torch.tensor(g)
        theirs.step()
    np.testing.assert_allclose(ours, tensor.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_one_cycle_matches_torch():
    torch = pytest.importorskip("torch", reason="the comparison needs PyTorch (the torch extra)")
    registry = build_registry(entry_points=False, environment=False)
    ours = registry.entry("schedule", "one_cycle").value(base_lr=0.5, epochs=3,
                                                         steps_per_epoch=7)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    theirs = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, total_steps=21)
    expected = []
    for _ in range(21):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        theirs.step()
    assert [ours.rate(e, s) for e in range(3) for s in range(7)] == pytest.approx(expected,
                                                                                rel=1e-12)
