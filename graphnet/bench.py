"""Time a training step and inference, per node and in total, and measure peak memory.

A training step is the step ``graphnet train`` takes (:class:`graphnet.training.step.TrainStep`:
forward with the loss, backward, update) with graphnet's ``sgd`` optimizer with momentum
(``torch.optim.SGD`` on the PyTorch side), on one fixed random batch
(:func:`graphnet.gradcheck.random_feeds`). Each figure is
the median of ``steps`` steps after ``warmup`` unmeasured ones. With ``compare="torch"`` the same
network is built in PyTorch from the spec (:mod:`graphnet.export.torch`), graphnet's parameters
copied in, outputs and gradients checked to agree (:func:`graphnet.testing.check_agreement`),
and the two frameworks timed in alternating bursts in this process on the same number of
threads, so that both see the same machine load.

Peak memory is the whole-process high-water mark of resident memory (Linux's VmHWM, else
``getrusage`` ``ru_maxrss``) of a *fresh* process that runs only one framework's steps: within
one process the mark never goes down and would hold the other framework's peak too. The report
also gives that process's mark before its first step (imports, parameters, the batch), so the
steps' own share is the difference.

A node the engine runs inside the one before it (a ReLU fused into its conv, see
``Network._fusions``) has no time of its own: its entry in ``nodes`` names that node as
``fused_into``, and the producer's time includes it. A node whose op chose among equivalent
implementations (a conv's kernels, measured at the benchmark's batch during the warm-up, see
:class:`graphnet.op.Choices`) names the one it ran as ``kernel``.

Logic only: :mod:`graphnet.render.bench` prints the report, which is plain data (JSON-ready).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from . import limits, parallel, runtime
from .analysis import required_inputs
from .engine import Network, requires_grad
from .errors import UsageError
from .gradcheck import random_feeds
from .op import Choices
from .training.step import TrainStep

MEMORY_METHOD = ("whole-process peak resident set size (Linux VmHWM, else getrusage ru_maxrss) "
                 "of a fresh process running only that framework's warm-up and steps")
AGREEMENT_BATCH = 8
"""Samples used to check that the PyTorch translation agrees (enough to see any difference)."""


@dataclass
class BenchConfig:
    batch_size: int
    steps: int = 20
    warmup: int = 3
    threads: int | None = None
    """None: the cores this process may use."""
    compare: str | None = None
    """None or "torch"."""
    lr: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    memory: bool = True
    plugins: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()

    def check(self) -> None:
        for name, value, low in (("--batch-size", self.batch_size, 1), ("--steps", self.steps, 1),
                                 ("--warmup", self.warmup, 0),
                                 ("--threads", self.threads if self.threads is not None else 1, 1)):
            if value < low:
                raise UsageError("bad argument", field=name, expected=f"an integer >= {low}",
                                 found=str(value))
        if self.compare not in (None, "torch"):
            raise UsageError("unknown framework to compare with", field="--compare",
                             expected="torch", found=repr(self.compare))


# --- inputs ----------------------------------------------------------------------------------
def loss_output(graph) -> str:
    """The name of the output that is the loss; UsageError if the graph has none."""
    for output, target in graph.outputs.items():
        if target == graph.loss:
            return output
    raise UsageError("graphnet bench times a training step, so the graph needs a loss output",
                     file=graph.file, field="outputs", expected="an output naming a loss node")


# --- the two frameworks ----------------------------------------------------------------------
class GraphnetRunner:
    """One network, one batch, one optimizer; per-node times of the last step."""

    framework = "graphnet"

    def __init__(self, graph, feeds, *, seed=0, lr=0.01, momentum=0.9, network=None):
        self.graph = graph
        self.feeds = feeds
        self.network = network or Network(graph, seed=seed)
        self.lr = lr
        self.step = TrainStep(self.network,
                              graph.registry.entry("optimizer", "sgd").value(momentum=momentum),
                              loss=loss_output(graph))
        required = required_inputs(graph)
        self.inference_outputs = [o for o, target in graph.outputs.items()
                                  if target in required["computable"]]
        self.inference_feeds = {name: feeds[name] for name in required["inputs"]}
        self.node_seconds: dict[tuple[str, str], float] = {}

    def _record(self, node: str, method: str, seconds: float) -> None:
        key = (node, method)
        self.node_seconds[key] = self.node_seconds.get(key, 0.0) + seconds

    def train_step(self) -> None:
        self.node_seconds = {}
        self.step(self.feeds, self.lr, profile=self._record)

    def infer(self) -> None:
        self.node_seconds = {}
        self.network.forward(self.inference_feeds, training=False,
                             outputs=self.inference_outputs, profile=self._record)


class TorchRunner:
    """The PyTorch translation with graphnet's parameters, the same batch and optimizer."""

    framework = "torch"

    def __init__(self, graph, feeds, network, *, lr=0.01, momentum=0.9):
        from .export import torch as export
        torch = export.require_torch()
        self.torch = torch
        self.graph = graph
        self.model = export.build(graph, network)
        self.module = self.model.module
        required = required_inputs(graph)["inputs"]
        self.args = export.tensors(self.model, feeds, network.dtype)
        self.inference_args = [arg for name, arg in zip(self.model.input_names, self.args)
                               if name in required]
        self.loss_output = loss_output(graph)
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=lr, momentum=momentum)
        self.node_seconds: dict[tuple[str, str], float] = {}
        self._hooks = []

    def train_step(self) -> None:
        self.node_seconds = {}
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self.module(*self.args)
        outputs[self.loss_output].backward()
        self.optimizer.step()

    def infer(self) -> None:
        self.node_seconds = {}
        self.module.eval()
        with self.torch.inference_mode():
            self.module(*self.inference_args)

    def profile(self, on: bool) -> None:
        """Attach (or remove) hooks timing each node's layer, forward and backward. They cost
        time of their own, so timed steps run without them."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if not on:
            return
        ident_of = self.model.idents
        for node in self.graph.op_nodes:
            layer = getattr(self.module, ident_of[node.name], None)
            if isinstance(layer, self.torch.nn.Module):
                self._hooks += _timing_hooks(layer, node.name, self)


def _timing_hooks(layer, name: str, runner: TorchRunner) -> list:
    started = {}

    def begin(method):
        def hook(*_):
            started[method] = time.perf_counter()
        return hook

    def end(method):
        def hook(*_):
            key = (name, method)
            runner.node_seconds[key] = (runner.node_seconds.get(key, 0.0)
                                        + time.perf_counter() - started.pop(method))
        return hook

    return [layer.register_forward_pre_hook(begin("forward")),
            layer.register_forward_hook(end("forward")),
            layer.register_full_backward_pre_hook(begin("backward")),
            layer.register_full_backward_hook(end("backward"))]


# --- measuring -------------------------------------------------------------------------------
@dataclass
class Samples:
    """Per-step wall times and per-node times of one framework."""

    step: list[float] = field(default_factory=list)
    inference: list[float] = field(default_factory=list)
    nodes: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add_nodes(self, node_seconds: dict) -> None:
        for key, seconds in node_seconds.items():
            self.nodes.setdefault(key, []).append(seconds)


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


BURST = 4
"""Timed steps a framework runs in a row before the other takes over. Each burst starts with
an untimed step: PyTorch's OpenMP threads spin for a while after its step, and the first step
after a switch measured up to 2x slower for that (and only for that) reason."""


def _bursts(steps: int) -> list[int]:
    return [min(BURST, steps - first) for first in range(0, steps, BURST)]


def measure(runners: list, config: BenchConfig) -> list[Samples]:
    """Warm up, then time the runners' training steps in alternating bursts, then their
    inference likewise."""
    samples = [Samples() for _ in runners]
    for _ in range(config.warmup):
        for runner in runners:
            runner.train_step()
    for burst in _bursts(config.steps):
        for runner, sample in zip(runners, samples):
            runner.train_step()  # settles the machine after the other framework
            for _ in range(burst):
                sample.step.append(_timed(runner.train_step))
                if runner.framework == "graphnet":
                    sample.add_nodes(runner.node_seconds)
    for runner, sample in zip(runners, samples):
        if runner.framework == "torch":  # hooked steps, kept out of the timed ones
            runner.profile(True)
            with warnings.catch_warnings():  # a first layer's backward hook fires on outputs
                warnings.simplefilter("ignore")
                for _ in range(config.steps):
                    runner.train_step()
                    sample.add_nodes(runner.node_seconds)
            runner.profile(False)
    for _ in range(max(config.warmup, 1)):
        for runner in runners:
            runner.infer()
    for burst in _bursts(config.steps):
        for runner, sample in zip(runners, samples):
            runner.infer()
            for _ in range(burst):
                sample.inference.append(_timed(runner.infer))
    return samples


def gemm_gflops(threads: int | None = None, size: int = 512, repeats: int = 8) -> float:
    """numpy's float32 matrix-product rate as graphnet's ops get it: one product per thread of
    graphnet's pool at once (each on single-threaded BLAS), or BLAS's own threads without one."""
    rng = np.random.default_rng(0)
    left = rng.standard_normal((size, size)).astype(np.float32)
    right = rng.standard_normal((size, size)).astype(np.float32)
    threads = threads or parallel.num_threads()

    def work(start, stop):
        product = np.empty((size, size), np.float32)
        for _ in range(start, stop):
            np.matmul(left, right, out=product)

    work(0, 2)  # warm up BLAS and the pool
    best = float("inf")
    for _ in range(3):
        best = min(best, _timed(lambda: parallel.run_split(work, threads * repeats,
                                                           min_part=repeats)))
    return 2 * size ** 3 * threads * repeats / best / 1e9


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3


def _node_figures(graph, sample: Samples, batch_size: int, step_ms: float) -> dict:
    requires = requires_grad((name, graph.nodes[name]) for name in graph.order)
    figures = {}
    for node in graph.op_nodes:
        forward = sample.nodes.get((node.name, "forward"))
        backward = sample.nodes.get((node.name, "backward"))
        entry = {"op": node.op_name,
                 "forward_ms": _median_ms(forward) if forward else None,
                 "backward_ms": _median_ms(backward) if backward else None}
        total = (entry["forward_ms"] or 0.0) + (entry["backward_ms"] or 0.0)
        entry["share"] = total / step_ms if forward or backward else None
        if node.macs:
            forward_flops = 2.0 * node.macs * batch_size
            # backward: a product for the weights' gradient and one for the input's, if wanted
            products = (int(node.trainable and bool(node.param_specs))
                        + int(any(requires[s] for s in node.inputs)))
            entry["forward_gflops"] = (forward_flops / entry["forward_ms"] / 1e6
                                       if entry["forward_ms"] else None)
            entry["backward_gflops"] = (products * forward_flops / entry["backward_ms"] / 1e6
                                        if entry["backward_ms"] and products else None)
        figures[node.name] = entry
    return figures


def _figures(graph, sample: Samples, batch_size: int) -> dict:
    step_ms = _median_ms(sample.step)
    inference_ms = _median_ms(sample.inference)
    nodes = _node_figures(graph, sample, batch_size, step_ms)
    in_nodes = sum((n["forward_ms"] or 0.0) + (n["backward_ms"] or 0.0) for n in nodes.values())
    return {"step_ms": step_ms, "images_per_s": batch_size / step_ms * 1e3,
            "inference_ms": inference_ms, "inference_images_per_s": batch_size / inference_ms * 1e3,
            "outside_nodes_ms": step_ms - in_nodes if sample.nodes else None,
            "nodes": nodes}


RATIO_FIGURES = ("step_ms", "images_per_s", "inference_ms", "inference_images_per_s", "peak_mib")


def run(graph, config: BenchConfig) -> dict:
    """Benchmark ``graph``; returns the report (plain data, see the module docstring)."""
    config.check()
    output = loss_output(graph)
    if config.threads is not None:
        parallel.set_num_threads(config.threads)
    threads = parallel.num_threads() if config.threads is None else config.threads
    limits.check_memory(graph, batch_size=config.batch_size, training=True)  # before the batch
    feeds = random_feeds(graph, config.batch_size, config.seed, dtype=np.float32)
    graphnet = GraphnetRunner(graph, feeds, seed=config.seed, lr=config.lr,
                              momentum=config.momentum)
    runners = [graphnet]
    report = {"graph": graph.name, "spec": graph.file, "batch_size": config.batch_size,
              "steps": config.steps, "warmup": config.warmup, "threads": threads,
              "blas": _blas_description(), "loss_output": output,
              "load_average": _load_average()}
    if config.compare == "torch":
        from .export.torch import require_torch
        from .testing import check_agreement
        torch = require_torch()
        torch.set_num_threads(threads)
        report["agreement"] = check_agreement(
            graph, graphnet.network, {k: v[:AGREEMENT_BATCH] for k, v in feeds.items()},
            exact_recheck=True)
        runners.append(TorchRunner(graph, feeds, graphnet.network, lr=config.lr,
                                   momentum=config.momentum))
        # the agreement ran a batch of 8: choose kernels at the benchmark's batch
        graphnet.network.choices = Choices()
        report["torch_version"] = torch.__version__
    report["gemm_gflops"] = gemm_gflops()
    others = OtherProcesses()
    samples = measure(runners, config)
    report["other_cores"] = others.cores()
    for runner, sample in zip(runners, samples):
        figures = _figures(graph, sample, config.batch_size)
        if config.memory:
            figures.update(memory_in_fresh_process(graph, config, runner.framework, threads))
        if runner.framework == "graphnet":
            # a node run inside the one before it has no time of its own
            for consumer, producer in runner.network.fused_nodes().items():
                figures["nodes"][consumer]["fused_into"] = producer
            for node, kernel in runner.network.choices.by_node.items():
                if node in figures["nodes"]:
                    figures["nodes"][node]["kernel"] = kernel
            report.update(figures)
        else:
            report[runner.framework] = figures
    report["memory_method"] = MEMORY_METHOD if config.memory else None
    if config.compare:
        theirs = report[config.compare]
        report["ratio"] = {name: report[name] / theirs[name] for name in RATIO_FIGURES
                           if report.get(name) and theirs.get(name)}
    return report


def _load_average() -> float | None:
    """The system's one-minute load average when the run started: other processes competing
    for the cores slow both frameworks, PyTorch's spinning OpenMP threads most."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


class OtherProcesses:
    """The cores other processes kept busy from its making until :meth:`cores` is asked: the
    machine's busy CPU time (Linux's /proc/stat, hypervisor steal included) less this
    process's own, per second of wall time. The load average comes too late for a row: it is
    a one-minute mean, taken as the row starts, and a test suite started during a run left
    the rows it overlapped under the retake threshold while PyTorch's steps ran 5-20x slower
    (its spinning OpenMP threads lose most to a competitor). None where /proc/stat is not."""

    def __init__(self):
        self.start = self._sample()

    def cores(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        return other_cores(self.start, end)

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        """(wall seconds, the machine's busy CPU seconds, this process's CPU seconds)."""
        try:
            with open("/proc/stat", encoding="ascii") as stream:
                fields = stream.readline().split()
            ticks = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, AttributeError):
            return None
        if not fields or fields[0] != "cpu" or len(fields) < 5:
            return None
        # user nice system idle iowait irq softirq steal (guest time is counted in user)
        counts = [int(value) for value in fields[1:9]]
        busy = sum(counts) - counts[3] - (counts[4] if len(counts) > 4 else 0)
        own = os.times()
        return time.perf_counter(), busy / ticks, own.user + own.system


def other_cores(start: tuple, end: tuple) -> float:
    """Cores other processes used on average between two samples of
    :meth:`OtherProcesses._sample` (never below 0: the two clocks tick apart)."""
    wall = end[0] - start[0]
    others = (end[1] - start[1]) - (end[2] - start[2])
    return max(others / wall, 0.0) if wall > 0 else 0.0


BLAS_NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}


def _blas_description() -> str:
    """Which BLAS numpy's products run on, with which kernels (``OpenBLAS 0.3.31, Haswell
    kernels``, and whether OPENBLAS_CORETYPE chose them: OpenBLAS's AVX2 kernels multiply at
    about half the rate of its AVX-512 ones on a CPU that has both), and on how many threads."""
    from .blas import threadpoolctl

    libraries = []
    for pool in threadpoolctl().threadpool_info():
        if pool["user_api"] != "blas":
            continue
        name = BLAS_NAMES.get(pool["internal_api"], pool["internal_api"])
        described = f"{name} {pool.get('version') or ''}".strip()
        if pool.get("architecture"):
            described += f", {pool['architecture']} kernels"
            if pool["internal_api"] == "openblas" and os.environ.get("OPENBLAS_CORETYPE"):
                described += " (as OPENBLAS_CORETYPE says)"
        libraries.append(described)
    if parallel.num_threads() > 1:  # graphnet.runtime limits BLAS while a network runs
        threading = "1 thread per graphnet worker (limited through threadpoolctl)"
    else:
        threading = "BLAS's own threading (graphnet's pool is off)"
    return "; ".join([*libraries, threading])


# --- memory, in a fresh process --------------------------------------------------------------
def memory_in_fresh_process(graph, config: BenchConfig, framework: str, threads: int) -> dict:
    """``peak_mib`` and ``baseline_mib`` of a new Python process that loads the spec and runs
    only ``framework``'s warm-up and steps (at most 3 of each: the peak is reached by then)."""
    if not graph.file:
        return {"peak_mib": None, "baseline_mib": None}
    job = {"spec": str(graph.file), "framework": framework, "batch_size": config.batch_size,
           "threads": threads, "steps": min(config.steps, 3), "warmup": min(config.warmup, 3),
           "seed": config.seed, "lr": config.lr, "momentum": config.momentum,
           "plugins": list(config.plugins), "disabled": list(config.disabled_plugins)}
    completed = subprocess.run(
        [sys.executable, "-c", "from graphnet.bench import memory_child; memory_child()"],
        input=json.dumps(job), capture_output=True, text=True, env=dict(os.environ))
    if completed.returncode != 0:
        raise UsageError(f"the {framework} memory measurement failed: "
                         + (completed.stderr.strip().splitlines() or ["no message"])[-1])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def memory_child() -> None:
    """The fresh process of :func:`memory_in_fresh_process`: a job as JSON on stdin, the two
    marks as JSON on stdout."""
    from .graph import load
    from .registry import build_registry

    job = json.loads(sys.stdin.read())
    runtime.own_process()  # measured as `graphnet train` runs: malloc keeps freed memory
    registry = build_registry(job["plugins"], disabled=set(job["disabled"]))
    graph = load(job["spec"], registry=registry)
    parallel.set_num_threads(job["threads"])
    feeds = random_feeds(graph, job["batch_size"], job["seed"], dtype=np.float32)
    runner = GraphnetRunner(graph, feeds, seed=job["seed"], lr=job["lr"],
                            momentum=job["momentum"])
    if job["framework"] == "torch":
        from .export.torch import require_torch
        require_torch().set_num_threads(job["threads"])
        runner = TorchRunner(graph, feeds, runner.network, lr=job["lr"],
                             momentum=job["momentum"])

    baseline = peak_rss_mib()
    for _ in range(job["warmup"] + job["steps"]):
        runner.train_step()
    runner.infer()
    print(json.dumps({"peak_mib": peak_rss_mib(), "baseline_mib": baseline}))


def peak_rss_mib() -> float:
    """This process's peak resident set size: VmHWM on Linux, which starts afresh at exec
    (``ru_maxrss`` keeps the forking parent's), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def as_json(report: dict) -> str:
    return json.dumps(report, indent=2, default=lambda value: asdict(value)
                      if hasattr(value, "__dataclass_fields__") else str(value))
