"""graphnet: declare, inspect, train and extend convolutional neural networks as data.

    import graphnet
    graph = graphnet.load("specs/lenet5.toml")      # validated, shapes and costs inferred
    net = graphnet.Network(graph, seed=0)            # parameters, float32 by default
    outputs = net.forward({"image": x, "label": y}, training=True)
    grads = net.backward()                           # grads.params[node][param]

    result = graphnet.train.train(graph, epochs=3)   # the spec's [train], overridden; checkpoints
    result.final["test_accuracy"], result.confusion  # in runs/<name>; result.predict(images)
    trained = graphnet.load_trained(graph, "runs/lenet5/checkpoint.npz")
"""
from .engine import Gradients, Network
from .errors import (CheckpointError, DataError, GraphnetError, NumericError, PluginError,
                     ResourceError, ShapeError, SpecError, UsageError)
from .graph import Graph, load
from .op import GLOBAL, POINTWISE, Attr, Op, Param, Window
from .spec import SpecErrors
from . import train  # the module: graphnet.train.train(...), graphnet.train.TrainConfig
from .inference import load_trained
from .optim import Optimizer, Schedule
from .train import TrainConfig, TrainResult

__all__ = [
    "Attr", "CheckpointError", "DataError", "GLOBAL", "Gradients", "Graph", "GraphnetError",
    "Network", "NumericError", "Op", "POINTWISE", "Param", "PluginError", "ResourceError",
    "ShapeError", "SpecError", "SpecErrors", "UsageError", "Window", "load",
    "Optimizer", "Schedule", "TrainConfig", "TrainResult", "load_trained", "train",
]
__version__ = "0.1.0"
