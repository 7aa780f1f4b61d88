"""Built-in optimizers (sgd, adam, adamw, rmsprop, adagrad) and learning-rate schedules
(constant, step, cosine, one_cycle, plateau); every schedule also takes ``warmup_epochs``.

Registered through ``graphnet_register_optimizers`` like a user's own; the contracts are in
:mod:`graphnet.optim`. Updates are in place and keep the parameters' dtype (a Python float
times a float32 array stays float32).
"""
from __future__ import annotations

import math
import sys

import numpy as np

from graphnet.errors import CheckpointError
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr
from graphnet.optim import Optimizer, Schedule

WEIGHT_DECAY = Attr("float", default=0.0, minimum=0,
                    doc="L2 penalty: weight_decay·w is added to every gradient")


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum: w ← w − η·g.

    With momentum μ (PyTorch's form): v ← μ·v + g, then w ← w − η·v, or with Nesterov
    w ← w − η·(g + μ·v). Without momentum the update is exactly w ← w − η·dL/dw.
    """

    name = "sgd"
    options = {
        "momentum": Attr("float", default=0.0, minimum=0, maximum=1,
                         doc="fraction of the previous step kept (0 for plain SGD)"),
        "nesterov": Attr("bool", default=False, doc="look ahead along the momentum"),
        "weight_decay": WEIGHT_DECAY,
    }
    slot_names = ("velocity",)

    def update(self, key, param, grad, lr):
        momentum = self.config.momentum
        if not momentum:
            param -= lr * grad
            return
        velocity = self.slot("velocity", key, param)
        velocity *= momentum
        velocity += grad
        param -= lr * (grad + momentum * velocity if self.config.nesterov else velocity)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): steps scaled by running estimates of the gradient's moments.

    m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², w ← w − η·m̂/(√v̂ + ε) with the bias corrections
    m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ). Weight decay is L2 added to the gradient (as torch's Adam).
    """

    name = "adam"
    options = {
        "beta1": Attr("float", default=0.9, minimum=0, maximum=0.999999,
                      doc="decay of the running mean of gradients"),
        "beta2": Attr("float", default=0.999, minimum=0, maximum=0.999999,
                      doc="decay of the running mean of squared gradients"),
        "eps": Attr("float", default=1e-8, minimum=0, doc="added to the denominator"),
        "weight_decay": WEIGHT_DECAY,
    }
    slot_names = ("m", "v")
    default_lr = 0.001  # PyTorch's and Keras's

    def update(self, key, param, grad, lr):
        beta1, beta2 = self.config.beta1, self.config.beta2
        mean = self.slot("m", key, param)
        square = self.slot("v", key, param)
        mean *= beta1
        mean += (1 - beta1) * grad
        square *= beta2
        square += (1 - beta2) * (grad * grad)
        correction1 = 1 - beta1 ** self.steps
        correction2 = 1 - beta2 ** self.steps
        denominator = np.sqrt(square) / math.sqrt(correction2) + self.config.eps
        param -= (lr / correction1) * mean / denominator


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): w ← w·(1 − η·λ), then Adam.

    The decay shrinks the weights directly instead of entering the gradient, so it is not
    rescaled by Adam's per-weight step sizes (PyTorch's AdamW, default λ = 0.01).
    """

    name = "adamw"
    options = {**Adam.options,
               "weight_decay": Attr("float", default=0.01, minimum=0,
                                    doc="decoupled decay: each step multiplies w by 1 − lr·decay")}
    l2_weight_decay = False

    def update(self, key, param, grad, lr):
        if self.config.weight_decay:
            param *= 1 - lr * self.config.weight_decay
        super().update(key, param, grad, lr)


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012): steps divided by a running root mean square of the gradient.

    s ← αs + (1−α)g², w ← w − η·g/(√s + ε); ``centered`` subtracts the squared running mean of
    g under the root, and ``momentum`` μ keeps b ← μb + g/(√s + ε), w ← w − η·b (PyTorch's form).
    """

    name = "rmsprop"
    options = {
        "alpha": Attr("float", default=0.99, minimum=0, maximum=1,
                      doc="decay of the running mean of squared gradients"),
        "eps": Attr("float", default=1e-8, minimum=0, doc="added to the denominator"),
        "momentum": Attr("float", default=0.0, minimum=0, maximum=1,
                         doc="fraction of the previous step kept"),
        "centered": Attr("bool", default=False, doc="normalise by the variance, not the mean square"),
        "weight_decay": WEIGHT_DECAY,
    }
    slot_names = ("square", "mean", "buffer")
    default_lr = 0.01  # PyTorch's

    def update(self, key, param, grad, lr):
        alpha = self.config.alpha
        square = self.slot("square", key, param)
        square *= alpha
        square += (1 - alpha) * (grad * grad)
        if self.config.centered:
            mean = self.slot("mean", key, param)
            mean *= alpha
            mean += (1 - alpha) * grad
            denominator = np.sqrt(square - mean * mean) + self.config.eps
        else:
            denominator = np.sqrt(square) + self.config.eps
        if self.config.momentum:
            buffer = self.slot("buffer", key, param)
            buffer *= self.config.momentum
            buffer += grad / denominator
            param -= lr * buffer
        else:
            param -= lr * (grad / denominator)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011): each weight's step divided by the root of its summed
    squared gradients, so often-updated weights slow down: s ← s + g², w ← w − η_t·g/(√s + ε),
    with η_t = η / (1 + (t−1)·lr_decay) (PyTorch's form)."""

    name = "adagrad"
    options = {
        "eps": Attr("float", default=1e-10, minimum=0, doc="added to the denominator"),
        "lr_decay": Attr("float", default=0.0, minimum=0, doc="η_t = η / (1 + (t−1)·lr_decay)"),
        "weight_decay": WEIGHT_DECAY,
    }
    slot_names = ("sum",)

    def update(self, key, param, grad, lr):
        total = self.slot("sum", key, param)
        total += grad * grad
        step_lr = lr / (1 + (self.steps - 1) * self.config.lr_decay)
        param -= step_lr * (grad / (np.sqrt(total) + self.config.eps))


class Constant(Schedule):
    """The same learning rate throughout."""

    name = "constant"

    def lr_at(self, epoch, step):
        return self.base_lr


class StepDecay(Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    name = "step"
    options = {
        "step_size": Attr("int", default=10, minimum=1, doc="epochs between decays"),
        "gamma": Attr("float", default=0.1, minimum=0, doc="factor applied at each decay"),
    }

    def lr_at(self, epoch, step):
        return self.base_lr * self.config.gamma ** (epoch // self.config.step_size)


class Cosine(Schedule):
    """Cosine annealing from the base rate down to ``floor`` over the run, step by step."""

    name = "cosine"
    options = {"floor": Attr("float", default=0.0, minimum=0,
                             doc="the learning rate reached at the end of the run")}

    def lr_at(self, epoch, step):
        floor = self.config.floor
        fraction = 0.5 * (1 + math.cos(math.pi * self.progress(epoch, step)))
        return floor + (self.base_lr - floor) * fraction


class OneCycle(Schedule):
    """One cycle (Smith & Topin, 2019): up from lr/div to lr over the first pct_start of the
    run, then down to lr/(div·final_div), both along half-cosines (PyTorch's OneCycleLR, with
    the spec's lr as its max_lr)."""

    name = "one_cycle"
    options = {
        "pct_start": Attr("float", default=0.3, minimum=0, maximum=1,
                          doc="share of the run spent rising"),
        "div_factor": Attr("float", default=25.0, minimum=1, doc="the first rate is lr / div_factor"),
        "final_div_factor": Attr("float", default=1e4, minimum=1,
                                 doc="the last rate is the first / final_div_factor"),
    }

    def lr_at(self, epoch, step):
        total = self.epochs * self.steps_per_epoch
        position = epoch * self.steps_per_epoch + step
        initial = self.base_lr / self.config.div_factor
        final = initial / self.config.final_div_factor
        peak_step = float(self.config.pct_start * total) - 1
        if position <= peak_step:
            return _cosine_between(initial, self.base_lr, position / peak_step if peak_step > 0
                                   else 1.0)
        remaining = total - 1 - peak_step
        return _cosine_between(self.base_lr, final, min(1.0, (position - peak_step) / remaining)
                               if remaining > 0 else 1.0)


def _cosine_between(start: float, end: float, fraction: float) -> float:
    """From ``start`` (fraction 0) to ``end`` (fraction 1) along half a cosine."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * fraction))


class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` when ``monitor`` (validation loss by default) has not
    improved by more than ``threshold`` (relative) for ``patience`` epochs (the training loss in a
    run without a validation split) (as PyTorch's
    ReduceLROnPlateau and Keras's callback), never below ``min_lr``."""

    name = "plateau"
    options = {
        "monitor": Attr("str", default="val_loss", doc="the epoch metric watched (lower is better)"),
        "factor": Attr("float", default=0.1, minimum=0, maximum=1, doc="multiplier at a plateau"),
        "patience": Attr("int", default=10, minimum=0,
                         doc="epochs without improvement before the rate drops"),
        "threshold": Attr("float", default=1e-4, minimum=0,
                          doc="relative improvement that counts"),
        "min_lr": Attr("float", default=0.0, minimum=0, doc="the rate never drops below this"),
    }

    def __init__(self, options=None, **kwargs):
        super().__init__(options, **kwargs)
        self.scale = 1.0
        self.best = sys.float_info.max  # finite, so checkpoints hold no infinity
        self.bad_epochs = 0

    def lr_at(self, epoch, step):
        return max(self.base_lr * self.scale, self.config.min_lr)

    def observe(self, epoch, metrics):
        value = metrics.get(self.config.monitor)
        if value is None and self.config.monitor == "val_loss":
            value = metrics.get("train_loss")  # a run without a validation split
        if value is None or not math.isfinite(value):
            return
        if value < self.best * (1 - self.config.threshold):
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.config.patience:
            self.scale *= self.config.factor
            self.bad_epochs = 0

    def state_dict(self):
        return {"scale": np.asarray(self.scale), "best": np.asarray(self.best),
                "bad_epochs": np.asarray(self.bad_epochs, dtype=np.int64)}

    def load_state_dict(self, state):
        if set(state) != {"scale", "best", "bad_epochs"}:
            raise CheckpointError(f"schedule {self.name!r} state is incomplete",
                                  expected="scale, best, bad_epochs",
                                  found=", ".join(sorted(state)) or "nothing")
        scale, best = float(state["scale"]), float(state["best"])
        if not (0 <= scale <= 1) or math.isnan(best):
            raise CheckpointError(f"schedule {self.name!r} state is out of range",
                                  field="scale", expected="a scale in [0, 1]", found=f"{scale}")
        self.scale, self.best, self.bad_epochs = scale, best, int(state["bad_epochs"])


@hookimpl
def graphnet_register_optimizers(registry):
    for optimizer_class in (SGD, Adam, AdamW, RMSprop, Adagrad):
        registry.add_optimizer(optimizer_class)
    for schedule_class in (Constant, StepDecay, Cosine, OneCycle, ReduceOnPlateau):
        registry.add_schedule(schedule_class)
