"""Conformance checks for ops, for graphnet's tests and for plugin authors' own tests::

    from graphnet.testing import check_op, check_torch_export
    check_op("my_op", input_shapes=[(3, 8, 8)], attrs={"factor": 2.0}, plugins=["my_op.py"])
    check_torch_export("my_op", input_shapes=[(3, 8, 8)], plugins=["my_op.py"])
    check_onnx_export("my_op", input_shapes=[(3, 8, 8)], plugins=["my_op.py"])

It builds a one-node graph, checks that shape inference equals what forward returns (the engine
checks every output's shape and dtype), that every gradient equals central differences in
float64, and that the receptive-field contribution is sane. For the optional fusion protocols
(:mod:`graphnet.fusion`): an op offering an epilogue must compute with it what it computes as a
node; an op taking epilogues must implement the whole protocol and give, with a tanh fused into
it, what it gives with the tanh run after it.

:func:`check_agreement` runs a graph in graphnet and in its PyTorch translation
(:mod:`graphnet.export.torch`) and compares outputs, gradients and the state a training step
updates; ``graphnet bench --compare torch`` reports it before timing, the export tests run it on
every spec, and :func:`check_torch_export` runs it on one op, a plugin author's too.
:func:`onnx_differences` runs a network and its ONNX export (:mod:`graphnet.export.onnx`) in
onnxruntime and compares the outputs; :func:`check_onnx_export` does it for one op.
"""
from __future__ import annotations

import math

from .engine import Network
from .export.torch import build, require_torch, tensors
from .fusion import PRODUCER_METHODS, offers_epilogue, producer_methods
from .gradcheck import GradcheckReport, gradcheck, random_feeds
from .graph import load
from .op import GLOBAL, POINTWISE, RunContext, Window, format_shape
from .registry import get_registry

import numpy as np


def single_op_spec(op_name: str, input_shapes, attrs=None, *, registry=None) -> dict:
    """A spec dict with one input per shape feeding one node of ``op_name``."""
    registry = registry or get_registry()
    op_class = registry.entry("op", op_name).value
    inputs = {}
    for position, shape in enumerate(input_shapes):
        dtype = "int64" if position in op_class.integer_inputs else "float32"
        inputs[f"x{position}"] = {"shape": list(shape), "dtype": dtype}
    node = {"name": "node", "op": op_name, "inputs": list(inputs), **(attrs or {})}
    outputs = {"loss": "node"} if op_class.is_loss else {"output": "node"}
    return {"graph": {"name": f"check_{op_name}"}, "inputs": inputs, "nodes": [node],
            "outputs": outputs}


def check_op(op_name: str, input_shapes, attrs=None, *, plugins=(), registry=None,
             tolerance: float = 1e-6, batch_size: int = 2, seed: int = 0) -> GradcheckReport:
    """Run the conformance checks for one op; raise AssertionError describing any failure."""
    registry = registry or get_registry(plugins)
    graph = load(single_op_spec(op_name, input_shapes, attrs, registry=registry),
                 registry=registry)
    node = graph.nodes["node"]

    # Shape inference equals the forward pass (the engine raises if they differ), in both dtypes.
    for dtype in ("float32", "float64"):
        network = Network(graph, dtype=dtype, seed=seed)
        feeds = random_feeds(graph, batch_size, np.random.default_rng(seed), dtype=np.float64)
        for training in (True, False):
            network.forward(feeds, training=training)

    _require(isinstance(node.macs, int) and node.macs >= 0,
             f"op {op_name!r}: macs() gave {node.macs!r} multiply-accumulates per sample; "
             "expected a whole number >= 0")
    contribution = node.op.receptive_field(list(input_shapes), node.attrs)
    field_text = _check_measured_field(op_name, graph, contribution, seed)
    if contribution == POINTWISE:
        spatial_in = [s[1:] for s in input_shapes if len(s) == 3]
        if len(node.shape) == 3 and spatial_in:
            _require(node.shape[1:] == spatial_in[0],
                     f"op {op_name!r} says its receptive field is pointwise but maps spatial "
                     f"size {spatial_in[0]} to {node.shape[1:]}")
    elif isinstance(contribution, Window):
        for values, what in ((contribution.kernel, "kernel"), (contribution.stride, "stride"),
                             (contribution.dilation, "dilation")):
            _require(len(values) == 2 and min(values) >= 1,
                     f"{op_name}: receptive-field {what} {values}")
        _require(min(contribution.padding) >= 0,
                 f"{op_name}: negative padding {contribution.padding}")
    else:
        _require(contribution == GLOBAL,
                 f"{op_name}: unknown receptive-field value {contribution!r}")

    _check_epilogues(op_name, graph, input_shapes, attrs, registry, batch_size, seed)
    report = gradcheck(graph, batch_size=batch_size, seed=seed, points_per_array=None,
                       tolerance=tolerance)
    _require(report.passed, f"op {op_name!r}: gradients differ from central differences: "
             + ", ".join(f"{c.node}.{c.array} rel. error {c.error:.2e}"
                         for c in report.checks + report.node_checks if c.error > tolerance))
    print(f"check_op {op_name}: output {format_shape(node.shape)}, {report.arrays} gradients "
          f"within {tolerance:g} (worst {report.worst:.1e}), receptive field {field_text}, "
          f"{node.macs:,} MACs per sample — ok")
    return report


def declared_field_box(contribution, output_index: tuple[int, int],
                       input_size: tuple[int, int]) -> tuple[range, range] | None:
    """The input rows and columns an output unit at ``output_index`` sees by the op's own
    account (its receptive-field contribution), clipped to the image; None for GLOBAL."""
    if contribution == GLOBAL:
        return None
    if contribution == POINTWISE:
        return tuple(range(i, i + 1) for i in output_index)
    box = []
    for axis in range(2):
        first = output_index[axis] * contribution.stride[axis] - contribution.padding[axis]
        last = first + contribution.dilation[axis] * (contribution.kernel[axis] - 1)
        box.append(range(max(first, 0), min(last, input_size[axis] - 1) + 1))
    return tuple(box)


def measured_field_box(graph, input_name: str, output_index: tuple[int, int],
                       seed: int = 0) -> tuple[range, range]:
    """The input rows and columns whose change changes the output unit at ``output_index`` (in
    every channel): one forward over a batch holding the image once per pixel, that pixel
    raised well above the rest (so it also wins a max), in float64, outside training."""
    node = graph.nodes["node"]
    network = Network(graph, dtype="float64", seed=seed)
    feeds = random_feeds(graph, 1, np.random.default_rng(seed), dtype=np.float64)
    channels, height, width = graph.nodes[input_name].shape
    base = feeds[input_name]
    batch = np.repeat(base, height * width + 1, axis=0)
    rows, cols = np.divmod(np.arange(height * width), width)
    # a different rise per channel: an op invariant to shifting all channels alike (softmax)
    # must still see the change
    rise = 10 * (np.abs(base).max() + 1) * np.linspace(1, 2, channels)
    batch[1 + np.arange(height * width), :, rows, cols] += rise
    batched = {name: (batch if name == input_name else np.repeat(value, len(batch), axis=0))
               for name, value in feeds.items()}
    output = network.forward(batched, training=False, outputs=[next(iter(graph.outputs))])
    unit = next(iter(output.values()))[(slice(None), slice(None)) + tuple(output_index)]
    changed = np.abs(unit[1:] - unit[:1]).max(axis=1) > 1e-9 * (np.abs(unit).max() + 1)
    seen_rows, seen_cols = rows[changed], cols[changed]
    if not len(seen_rows):
        return range(0), range(0)
    return (range(int(seen_rows.min()), int(seen_rows.max()) + 1),
            range(int(seen_cols.min()), int(seen_cols.max()) + 1))


def _box_text(box: tuple[range, range]) -> str:
    """``rows 2–4, columns 2–4`` for a field's bounding box."""
    return (f"rows {box[0].start}–{box[0].stop - 1}, "
            f"columns {box[1].start}–{box[1].stop - 1}")


def _check_measured_field(op_name: str, graph, contribution, seed: int) -> str:
    """The declared receptive field against the measured one, for an op whose output and some
    float input are images (C, H, W); returns how it describes the field."""
    node = graph.nodes["node"]
    if contribution == GLOBAL:
        return "global"
    images = [name for name in node.inputs if len(graph.nodes[name].shape) == 3
              and graph.nodes[name].dtype_kind == "float"]
    if len(node.shape) != 3 or not images or node.op.is_loss:
        return "pointwise" if contribution == POINTWISE else "not measured (no image)"
    output_index = (node.shape[1] // 2, node.shape[2] // 2)
    for input_name in images:
        size = graph.nodes[input_name].shape[1:]
        declared = declared_field_box(contribution, output_index, size)
        measured = measured_field_box(graph, input_name, output_index, seed)
        _require(measured == declared,
                 f"op {op_name!r}: its receptive field says output unit {output_index} sees "
                 f"input {input_name!r} at {_box_text(declared)}, but changing the input "
                 f"changes it at {_box_text(measured)}")
    if contribution == POINTWISE:
        return "pointwise (measured)"
    kernel = contribution.dilation[0] * (contribution.kernel[0] - 1) + 1, \
        contribution.dilation[1] * (contribution.kernel[1] - 1) + 1
    return f"{kernel[0]}×{kernel[1]} stride {contribution.stride[0]}×{contribution.stride[1]} (measured)"


def _check_epilogues(op_name, graph, input_shapes, attrs, registry, batch_size, seed) -> None:
    """The op as an epilogue equals the op as a node; fused into an op that accepts it, a tanh
    gives what it gives on its own (outputs and every gradient, float64)."""
    node = graph.nodes["node"]
    rng = np.random.default_rng(seed)
    epilogue = node.op.epilogue(node.attrs) if offers_epilogue(node.op) else None
    if epilogue is not None:
        # away from kinks (ReLU at 0), where an op and its epilogue may pick either side
        values = rng.uniform(0.1, 2.0, (batch_size, *input_shapes[0]))
        values *= rng.choice([-1.0, 1.0], values.shape)
        grad = rng.standard_normal(values.shape)
        ctx = RunContext(training=True, rng=rng, dtype=np.dtype(np.float64))
        output, saved = node.op.forward([values.copy()], {}, node.attrs, ctx)
        (expected_grad,), _ = node.op.backward(grad, saved, {}, node.attrs, ctx)
        fused_output = values.copy()
        epilogue.forward(fused_output)
        fused_grad = epilogue.gradient(grad, fused_output)
        _require(np.allclose(fused_output, output, rtol=1e-12, atol=1e-12),
                 f"op {op_name!r}: its epilogue's forward differs from the op's")
        _require(np.allclose(fused_grad, expected_grad, rtol=1e-12, atol=1e-12),
                 f"op {op_name!r}: its epilogue's backward differs from the op's")
    implemented = producer_methods(node.op)
    _require(len(implemented) in (0, len(PRODUCER_METHODS)),
             f"op {op_name!r} implements {', '.join(implemented)} but not "
             + ", ".join(m for m in PRODUCER_METHODS if m not in implemented)
             + ": an op taking epilogues needs all three (see graphnet.fusion)")
    if not implemented or not node.op.accepts_epilogue(list(input_shapes), node.attrs) or \
            "tanh" not in registry.names("op") or node.op.is_loss:
        return
    spec = single_op_spec(op_name, input_shapes, attrs, registry=registry)
    spec["nodes"].append({"name": "epilogue", "op": "tanh", "inputs": ["node"]})
    spec["outputs"] = {"output": "epilogue"}
    pair = load(spec, registry=registry)
    feeds = random_feeds(pair, batch_size, np.random.default_rng(seed), dtype=np.float64)
    results = []
    for fuse in (True, False):
        network = Network(pair, dtype="float64", seed=seed, fuse=fuse)
        output = network.forward(feeds, training=True)["output"]
        grad_seed = np.random.default_rng(seed + 1).standard_normal(output.shape)
        handed = grad_seed.copy()
        grads = network.backward({"output": handed}, input_grads=True)
        _require(np.array_equal(handed, grad_seed),
                 f"op {op_name!r} wrote into the gradient it was handed (fuse={fuse})")
        results.append((output, grads, network.fused_nodes()))
    (fused, fused_grads, fused_nodes), (plain, plain_grads, _) = results
    _require(fused_nodes == {"epilogue": "node"},
             f"op {op_name!r} accepts an epilogue but the engine did not fuse one into it")
    _require(np.allclose(fused, plain, rtol=1e-9, atol=1e-9),
             f"op {op_name!r}: its output with a fused epilogue differs from the plain one")
    pairs = [(f"the gradient of {name!r}", fused_grads.params.get("node", {}).get(name), array)
             for name, array in plain_grads.params.get("node", {}).items()]
    pairs += [(f"the gradient of input {name!r}", fused_grads.inputs.get(name), array)
              for name, array in plain_grads.inputs.items()]
    for what, found, expected in pairs:
        _require(found is not None and np.allclose(found, expected, rtol=1e-9, atol=1e-9),
                 f"op {op_name!r}: {what} with a fused epilogue differs or is missing")


def _require(condition: bool, message: str) -> None:
    """Raise AssertionError unless ``condition``: a plain ``assert`` vanishes under
    ``python -O``, and these checks are this module's whole purpose."""
    if not condition:
        raise AssertionError(message)


# --- agreement with the PyTorch translation ----------------------------------------------------
TOLERANCE = {"output": 1e-4, "gradient": 1e-4, "state": 1e-4}
"""Largest relative difference (see :func:`relative_difference`) allowed in float32."""
SCALE_FLOOR = 1e-3
"""Below this magnitude differences count as absolute: a gradient that is zero in exact
arithmetic (a bias followed by batch norm) is rounding noise in both frameworks."""


def relative_difference(ours, theirs, floor: float = SCALE_FLOOR) -> float:
    """max |ours − theirs| / max(max |theirs|, floor); infinite if the shapes differ."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return math.inf
    if not theirs.size:
        return 0.0
    scale = max(float(np.max(np.abs(theirs))), floor)
    return float(np.max(np.abs(ours - theirs))) / scale


def differences(graph, network, feeds: dict, *, training: bool,
                grad_outputs: dict | None = None) -> dict[str, float]:
    """Relative differences between graphnet and the translation, run on copies of
    ``network`` (so its running statistics stay as they are): every output, every parameter's
    gradient (from the loss, or from ``grad_outputs`` when the graph has none) and, in
    training, the state a step updates (batch norm's running statistics). Keys: ``"output
    logits"``, ``"gradient conv1/weight"``, ``"state bn1/running_mean"``, ..."""
    torch = require_torch()
    ours_net = Network(graph, dtype=network.dtype, params=network.flat_params(),
                       choices=network.choices)  # the kernels the network runs
    model = build(graph, ours_net)  # parameters copied before graphnet's forward updates state
    has_loss = graph.loss is not None
    seeded = has_loss or bool(grad_outputs)
    ours = ours_net.forward(feeds, training=training, keep_for_backward=seeded)
    grads = ours_net.backward(None if has_loss else grad_outputs) if seeded else None
    model.module.train(training)
    theirs = model.module(*tensors(model, feeds, network.dtype))
    result = {f"output {name}": relative_difference(value, theirs[name].detach().numpy())
              for name, value in ours.items()}
    if has_loss:
        loss_name = next(o for o, t in graph.outputs.items() if t == graph.loss)
        roots, root_grads = [theirs[loss_name]], None
    else:
        names = list(grad_outputs or ())
        roots = [theirs[name] for name in names]
        root_grads = [torch.as_tensor(np.asarray(grad_outputs[name], network.dtype))
                      for name in names]
    if seeded and all(root.requires_grad for root in roots):
        torch.autograd.backward(roots, root_grads)
        for node, by_name in grads.params.items():
            theirs_by_name = {param: model.module.get_parameter(
                model.param_map[f"{node}/{param}"]).grad for param in by_name}
            # A gradient that is zero in exact arithmetic (a bias before batch norm) is rounding
            # noise on the scale of the node's other gradients: measure it on that scale.
            node_scale = max([float(g.abs().max()) for g in theirs_by_name.values()
                              if g is not None and g.numel()] + [SCALE_FLOOR])
            for param, grad in by_name.items():
                their_grad = theirs_by_name[param]
                result[f"gradient {node}/{param}"] = (
                    math.inf if their_grad is None else
                    relative_difference(grad, their_grad.numpy(), floor=node_scale * 1e-1))
    if training:
        state = model.module.state_dict()
        for node in graph.op_nodes:
            for param, spec in node.param_specs.items():
                if not spec.trainable:
                    key = f"{node.name}/{param}"
                    result[f"state {key}"] = relative_difference(
                        ours_net.params[node.name][param], state[model.param_map[key]].numpy())
    return result


def is_random_in_training(graph, network, feeds: dict) -> bool:
    """Whether two training passes with different random generators differ (dropout)."""
    outputs = []
    for seed in (1, 2):
        # the network's kernel choices: copies measuring their own could differ by rounding
        copy = Network(graph, dtype=network.dtype, params=network.flat_params(),
                       choices=network.choices)
        outputs.append(copy.forward(feeds, training=True, rng=np.random.default_rng(seed)))
    return any(not np.array_equal(outputs[0][name], outputs[1][name]) for name in outputs[0])


def check_agreement(graph, network, feeds: dict, *, grad_outputs: dict | None = None,
                    exact_recheck: bool = False) -> dict:
    """Compare graphnet and PyTorch in evaluation and in training mode (training only when it
    is deterministic). Plain data: per mode the worst difference and where, and ``passed``.

    With ``exact_recheck``, a float32 mode that fails is compared again in float64, with the
    same parameters, kernels and batch. Where the two frameworks agree there to
    FLOAT64_TOLERANCE, the float32 differences are rounding that the network amplifies, not
    a different computation (ResNet-18's untrained layer4 gradients, batch norm over 8 samples
    of 7×7: 8e-2 apart in float32, 5e-14 in float64): the mode passes, its float32 worst still
    reported, with the float64 worst under ``float64``."""
    modes = {}
    for training in (False, True):
        mode = "training" if training else "eval"
        if training and is_random_in_training(graph, network, feeds):
            modes[mode] = {"skipped": "outputs are random while training (dropout)"}
            continue
        found = differences(graph, network, feeds, training=training, grad_outputs=grad_outputs)
        failures = _failures(found, TOLERANCE)
        modes[mode] = {**_worst(found), "failures": failures}
        if failures and exact_recheck and network.dtype == np.float32:
            exact = differences(graph, _in_float64(graph, network), _as_float64(feeds),
                                training=training, grad_outputs=_as_float64(grad_outputs))
            if not _failures(exact, FLOAT64_TOLERANCE):
                modes[mode].update(failures={}, float64=_worst(exact))
    passed = all(not mode.get("failures") for mode in modes.values())
    return {"tolerance": TOLERANCE, "modes": modes, "passed": passed}


FLOAT64_TOLERANCE = {kind: 1e-9 for kind in TOLERANCE}
"""What :func:`check_agreement`'s float64 recheck allows: float64 rounding alone, some 1e-13
apart on the deepest spec."""


def _failures(found: dict[str, float], tolerance: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in found.items()
            if not value <= tolerance[key.split(" ")[0]]}


def _worst(found: dict[str, float]) -> dict:
    worst = max(found, key=found.get) if found else None
    return {"worst": found.get(worst, 0.0), "where": worst}


def _in_float64(graph, network) -> Network:
    """A float64 copy of ``network``: its parameters and state, its kernel choices."""
    return Network(graph, dtype=np.float64, choices=network.choices,
                   params={name: value.astype(np.float64)
                           for name, value in network.flat_params().items()})


def _as_float64(arrays: dict | None) -> dict | None:
    """Feeds or output gradients with their floating-point arrays in float64."""
    if arrays is None:
        return None
    return {name: value.astype(np.float64) if np.asarray(value).dtype.kind == "f" else value
            for name, value in arrays.items()}


def check_torch_export(op_name: str, input_shapes, attrs=None, *, plugins=(), registry=None,
                       batch_size: int = 4, seed: int = 0) -> dict:
    """Check one op's PyTorch translation (its ``to_torch``) against the op itself: outputs,
    parameter gradients (from a random gradient of the output, or from the loss) and updated
    state agree in float32, in both modes. Needs PyTorch; raises AssertionError naming the
    worst difference, else returns the :func:`check_agreement` report."""
    registry = registry or get_registry(plugins)
    graph = load(single_op_spec(op_name, input_shapes, attrs, registry=registry),
                 registry=registry)
    network = Network(graph, seed=seed)
    rng = np.random.default_rng(seed)
    feeds = random_feeds(graph, batch_size, rng, dtype=np.float32)
    grad_outputs = None
    if graph.loss is None:
        shape = (batch_size, *graph.nodes["node"].shape)
        grad_outputs = {"output": rng.standard_normal(shape).astype(np.float32)}
    report = check_agreement(graph, network, feeds, grad_outputs=grad_outputs)
    failures = {mode: result["failures"] for mode, result in report["modes"].items()
                if result.get("failures")}
    _require(report["passed"], f"op {op_name!r}: its PyTorch translation differs from it: "
             + "; ".join(f"{mode}: " + ", ".join(f"{key} {value:.2e}"
                                                 for key, value in found.items())
                         for mode, found in failures.items()))
    return report


# --- agreement with the ONNX export ------------------------------------------------------------
def require_onnxruntime():
    """The onnxruntime module, or an ExportError saying how to install it (a test extra)."""
    from .export import require

    return require("onnxruntime", "onnxruntime", "test")


def run_onnx(model, feeds: dict) -> dict[str, np.ndarray]:
    """Run an ONNX model (a ModelProto or its bytes) in onnxruntime on one thread: every
    output by name, from the ``feeds`` its inputs name (floats as float32)."""
    onnxruntime = require_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # a guest on shared cores
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    arrays = {}
    for value in session.get_inputs():
        array = np.asarray(feeds[value.name])
        arrays[value.name] = array.astype(np.float32 if array.dtype.kind == "f" else np.int64)
    names = [value.name for value in session.get_outputs()]
    return dict(zip(names, session.run(names, arrays)))


def onnx_differences(network, feeds: dict, model=None) -> dict[str, float]:
    """Relative differences (see :func:`relative_difference`) between ``network``'s inference
    outputs and onnxruntime's on ``model`` (default: ``network`` exported now), per exported
    output. The exported outputs must be exactly the spec's outputs that are not losses."""
    from .export.onnx import exported_outputs, to_model

    model = to_model(network) if model is None else model
    theirs = run_onnx(model, feeds)
    expected = list(exported_outputs(network.graph))
    _require(list(theirs) == expected,
             f"the ONNX model's outputs are {list(theirs)}, expected {expected}")
    ours = network.forward(feeds, training=False, outputs=[o for o in expected
                                                           if o in network.graph.outputs])
    return {name: relative_difference(ours[name] if name in ours else
                                      _node_value(network, feeds, name), value)
            for name, value in theirs.items()}


def _node_value(network, feeds, name):
    """A node's inference value (an exported sink the spec did not name as an output)."""
    network.forward(feeds, training=False, outputs=[], capture=[name])
    return network.captured[name]


def moved_state(network, seed: int = 0):
    """``network`` with its state (batch norm's running statistics) set to random values in
    [0.5, 1.5], off the initial 0 and 1, so a translation that dropped or mixed up state would
    show. Returns the network."""
    rng = np.random.default_rng(seed)
    for node in network.graph.op_nodes:
        for name, spec in node.param_specs.items():
            if not spec.trainable:
                state = network.params[node.name][name]
                state[...] = rng.uniform(0.5, 1.5, state.shape)
    return network


def check_onnx_export(op_name: str, input_shapes, attrs=None, *, plugins=(), registry=None,
                      batch_size: int = 2, seed: int = 0) -> dict:
    """Check one op's ONNX translation (its ``to_onnx``) against the op itself: the exported
    model passes ``onnx.checker`` in full and onnxruntime's output equals the op's inference
    output in float32, its state (if any) first moved off its initial values
    (:func:`moved_state`). Needs onnx and onnxruntime; raises AssertionError naming the
    difference, else returns ``{"difference": ..., "tolerance": ..., "nodes": [ONNX op
    types]}``."""
    from .export.onnx import to_model

    registry = registry or get_registry(plugins)
    graph = load(single_op_spec(op_name, input_shapes, attrs, registry=registry),
                 registry=registry)
    network = moved_state(Network(graph, seed=seed), seed)
    feeds = random_feeds(graph, batch_size, np.random.default_rng(seed), dtype=np.float32)
    model = to_model(network)
    difference = onnx_differences(network, feeds, model)["output"]
    _require(difference <= TOLERANCE["output"],
             f"op {op_name!r}: its ONNX translation differs from it: relative difference "
             f"{difference:.2e} (tolerance {TOLERANCE['output']:.0e})")
    return {"difference": difference, "tolerance": TOLERANCE["output"],
            "nodes": [node.op_type for node in model.graph.node]}
