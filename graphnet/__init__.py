"""graphnet: declare, inspect, train and extend convolutional neural networks as data.

    import graphnet
    graph = graphnet.load("specs/lenet5.toml")      # validated, shapes and costs inferred
    net = graphnet.Network(graph, seed=0)            # parameters, float32 by default
    outputs = net.forward({"image": x, "label": y}, training=True)
    grads = net.backward()                           # grads.params[node][param]

    result = graphnet.train.train(graph, epochs=3)   # the spec's [train], overridden; checkpoints
    result.final["test_accuracy"], result.confusion  # in runs/<name>; result.predict(images)
    trained = graphnet.load_trained(graph, "runs/lenet5/checkpoint.npz")
    graphnet.export_onnx(trained.network, "lenet5.onnx")  # inference graph (the onnx extra)

Importing the package imports none of its modules: each name below loads its module the first
time it is asked for (PEP 562), so a plugin's ``import graphnet.op`` costs only the op contract.
"""
from __future__ import annotations

import importlib.util

_HOME = {  # public name → the module that defines it
    "Gradients": "engine", "Network": "engine",
    "CheckpointError": "errors", "DataError": "errors", "GraphnetError": "errors",
    "NumericError": "errors", "PluginError": "errors", "ResourceError": "errors",
    "ShapeError": "errors", "SpecError": "errors", "UsageError": "errors",
    "Graph": "graph", "load": "graph",
    "GLOBAL": "op", "POINTWISE": "op", "Attr": "op", "Op": "op", "Param": "op", "Window": "op",
    "SpecErrors": "spec",
    "load_trained": "inference", "export_onnx": "export.onnx",
    "import_onnx": "onnx_import",
    "Optimizer": "optim", "Schedule": "optim",
    "TrainConfig": "train", "TrainResult": "train",
}

__all__ = [
    "Attr", "CheckpointError", "DataError", "GLOBAL", "Gradients", "Graph", "GraphnetError",
    "Network", "NumericError", "Op", "POINTWISE", "Param", "PluginError", "ResourceError",
    "ShapeError", "SpecError", "SpecErrors", "UsageError", "Window", "import_onnx", "load",
    "Optimizer", "Schedule", "TrainConfig", "TrainResult", "load_trained", "train", "export_onnx",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # a module (graphnet.train, and any other a caller reaches for as an attribute, as it
        # could when importing the package loaded most of them)
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
