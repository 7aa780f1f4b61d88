"""graphnet: declare, inspect, train and extend convolutional neural networks as data.

    import graphnet
    graph = graphnet.load("specs/lenet5.toml")      # validated, shapes and costs inferred
    net = graphnet.Network(graph, seed=0)            # parameters, float32 by default
    outputs = net.forward({"image": x, "label": y}, training=True)
    grads = net.backward()                           # grads.params[node][param]
"""
from .engine import Gradients, Network
from .errors import (CheckpointError, DataError, GraphnetError, NumericError, PluginError,
                     ResourceError, ShapeError, SpecError, UsageError)
from .graph import Graph, load
from .op import GLOBAL, POINTWISE, Attr, Op, Param, Window
from .spec import SpecErrors

__all__ = [
    "Attr", "CheckpointError", "DataError", "GLOBAL", "Gradients", "Graph", "GraphnetError",
    "Network", "NumericError", "Op", "POINTWISE", "Param", "PluginError", "ResourceError",
    "ShapeError", "SpecError", "SpecErrors", "UsageError", "Window", "load",
]
__version__ = "0.1.0"
