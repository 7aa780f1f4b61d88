"""Built-in optimizers (sgd, adam) and learning-rate schedules (constant, step, cosine).

Registered through ``graphnet_register_optimizers`` like a user's own; the contracts are in
:mod:`graphnet.optim`. Updates are in place and keep the parameters' dtype (a Python float
times a float32 array stays float32).
"""
from __future__ import annotations

import math

import numpy as np

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


@hookimpl
def graphnet_register_optimizers(registry):
    for optimizer_class in (SGD, Adam):
        registry.add_optimizer(optimizer_class)
    for schedule_class in (Constant, StepDecay, Cosine):
        registry.add_schedule(schedule_class)
