"""Record or compare a fingerprint of every spec's outputs and gradients on a fixed seed.

A refactor that promises "nothing a user sees changes" runs this before and after:

    python bench/fingerprint.py record bench/results/fingerprints.json
    python bench/fingerprint.py compare bench/results/fingerprints.json

Each spec in specs/ is run forward (training and inference) and backward, float32 and float64,
at batch 5 (and 64 in float32, so that batches split into tiles) with parameters for seed 0 and random feeds for seed 1; the SHA-256 of every output,
parameter gradient and input gradient's bytes is recorded. ``compare`` exits 1 naming every
array whose bytes differ (with its largest relative difference when the shapes agree).

Specs needing more than MAX_MACS multiply-accumulates per sample (ResNet-18 at 224×224,
VGG-11) are skipped: at batch 64 they would take minutes; their ops are the same ones the
smaller specs run.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import graphnet
from graphnet.gradcheck import random_feeds

ROOT = Path(__file__).resolve().parent.parent
RUNS = (("float32", 5), ("float32", 64), ("float64", 5))
MAX_MACS = 100_000_000


def arrays_of(spec: Path, dtype: str, batch: int) -> dict[str, np.ndarray]:
    """Every array a user sees for one spec: outputs, parameter and input gradients."""
    graph = graphnet.load(spec)
    arrays = {}
    # every op's default implementation: a measured choice (a conv's kernel) depends on the
    # machine and its load, and the fingerprints would with it
    net = graphnet.Network(graph, seed=0, dtype=dtype, choices="default")
    feeds = random_feeds(graph, batch, np.random.default_rng(1), dtype=np.dtype(dtype))
    for name, value in net.forward(dict(feeds), training=False).items():
        arrays[f"inference/{name}"] = np.asarray(value)
    net = graphnet.Network(graph, seed=0, dtype=dtype, choices="default")
    outputs = net.forward(dict(feeds), training=True)
    for name, value in outputs.items():
        arrays[f"training/{name}"] = np.asarray(value)
    if graph.loss is not None and any(True for _ in net.trainable()):
        grads = net.backward(input_grads=True)
        for node, by_param in sorted(grads.params.items()):
            for param, value in sorted(by_param.items()):
                arrays[f"grad/{node}/{param}"] = value
        for name, value in sorted(getattr(grads, "inputs", {}).items()):
            if value is not None:
                arrays[f"grad_input/{name}"] = value
    return arrays


def fingerprints() -> tuple[dict[str, str], dict[str, np.ndarray]]:
    digests, arrays = {}, {}
    for spec in sorted((ROOT / "specs").glob("*.[tj][os][mo]*")):
        if graphnet.load(spec).total_macs > MAX_MACS:
            continue
        for dtype, batch in RUNS:
            for key, value in arrays_of(spec, dtype, batch).items():
                full = f"{spec.name}/{dtype}/{batch}/{key}"
                value = np.ascontiguousarray(value)
                digests[full] = f"{value.dtype}{list(value.shape)}:" + hashlib.sha256(
                    value.tobytes()).hexdigest()[:24]
                arrays[full] = value
    return digests, arrays


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("record", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    command, path = argv[0], Path(argv[1])
    digests, _ = fingerprints()
    if command == "record":
        path.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(digests)} arrays in {path}")
        return 0
    before = json.loads(path.read_text())
    differing = [key for key in sorted(set(before) | set(digests))
                 if before.get(key) != digests.get(key)]
    for key in differing:
        print(f"differs: {key}: {before.get(key)} -> {digests.get(key)}")
    print(f"{len(digests) - len(differing)} of {len(set(before) | set(digests))} arrays "
          "bit-identical")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
