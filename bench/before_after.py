"""Time two installations of graphnet side by side: the same `graphnet bench` rows, alternating
old and new in one run, so that a refactor or an optimisation is judged on one machine state.

    git worktree add ../graphnet-before REV
    python3 -m venv ../graphnet-before/.venv && ../graphnet-before/.venv/bin/pip install -e ../graphnet-before
    python bench/before_after.py ../graphnet-before/.venv/bin/python [--rounds 2] [--steps 20]

The first argument is the other installation's Python; the second defaults to this one
(``sys.executable``). Each row runs ``graphnet bench specs/NET.toml --batch-size B --threads 2
--format json`` in a fresh process, ``--rounds`` times per installation, alternating, and prints
a markdown table of every training-step and inference median with the speed-up of the medians
(before / after: above 1 means the new code is faster). Specs come from this checkout.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = (("lenet5", 64), ("lenet5", 256), ("bench_classic", 64), ("bench_classic", 256),
        ("bench_classic", 1), ("cifar_resnet", 64), ("cifar_resnet", 256))


def bench_once(python: str, spec: str, batch: int, steps: int, threads: int) -> dict:
    # -I and a neutral folder: `python -c` would otherwise import graphnet from this checkout
    command = [python, "-I", "-c", "import sys; from graphnet.cli import main; sys.exit(main())",
               "bench", str(ROOT / "specs" / f"{spec}.toml"), "--batch-size", str(batch),
               "--threads", str(threads), "--steps", str(steps), "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          env={**os.environ, "NO_COLOR": "1"})
    if done.returncode != 0:
        sys.exit(f"{python} bench {spec} {batch} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="the other installation's python")
    parser.add_argument("after", nargs="?", default=sys.executable, help="default: this python")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", nargs="*", default=[f"{s}:{b}" for s, b in ROWS],
                        help="NET:BATCH items (default: %(default)s)")
    args = parser.parse_args(argv)
    print("| net | batch | training step before | after | speed-up | inference before | after "
          "| speed-up | load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in args.rows:
        spec, batch = row.split(":")
        runs = {"before": [], "after": []}
        loads = []
        for _ in range(args.rounds):
            for label in ("before", "after"):
                report = bench_once(getattr(args, label), spec, int(batch), args.steps,
                                    args.threads)
                runs[label].append(report)
                loads.append(os.getloadavg()[0])
        cells = []
        for key in ("step_ms", "inference_ms"):
            before = [r[key] for r in runs["before"]]
            after = [r[key] for r in runs["after"]]
            cells += [", ".join(f"{v:.1f}" for v in before) + " ms",
                      ", ".join(f"{v:.1f}" for v in after) + " ms",
                      f"{statistics.median(before) / statistics.median(after):.2f}×"]
        print(f"| {spec} | {batch} | " + " | ".join(cells) + f" | {max(loads):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
