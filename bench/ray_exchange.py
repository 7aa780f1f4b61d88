"""How graphnet's Ray workers should sum gradients: time one exchange of P float32 gradients
between 2 workers on a local Ray instance, two ways.

- object store (what graphnet does): each worker returns its gradients from a call (Ray puts
  them into the object store), then each worker gets everyone's and sums them in rank order;
- collective: ray.util.collective's allreduce with the GLOO backend (which Ray implements with
  torch.distributed, so it needs PyTorch in every worker), one call per worker.

    python bench/ray_exchange.py            # P = 19k, 62k, 70k and 11.7M (shapes_cnn, LeNet-5,
                                            # bench_classic, ResNet-18)

Prints the median milliseconds of one exchange (the round trip from the driver included, as a
training step pays it) over --rounds rounds after a warm-up.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import numpy as np

SIZES = {"shapes_cnn": 19_466, "LeNet-5": 61_706, "classic": 69_610, "ResNet-18": 11_689_512}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # stay on 127.0.0.1
    import ray
    import ray.util.collective as collective

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level=logging.ERROR, log_to_driver=False)

    @ray.remote(num_cpus=1)
    class Peer:
        def __init__(self, rank):
            self.rank = rank

        def gradients(self, size):
            return np.full(size, self.rank + 1, np.float32)

        def sum_from_store(self, refs):
            parts = ray.get(refs)
            total = parts[0].copy()
            for part in parts[1:]:
                total += part
            return float(total[0])

        def allreduce(self, size):
            import torch

            tensor = torch.from_numpy(np.full(size, self.rank + 1, np.float32))
            collective.allreduce(tensor, group_name="grads")
            return float(tensor[0])

    peers = [Peer.remote(rank) for rank in range(2)]
    collective.create_collective_group(peers, 2, [0, 1], backend="gloo", group_name="grads")
    print(f"{'network':>12} {'parameters':>12} {'object store ms':>16} {'gloo allreduce ms':>18}")
    for name, size in SIZES.items():
        def store_round():
            refs = [peer.gradients.remote(size) for peer in peers]
            assert ray.get([peer.sum_from_store.remote(refs) for peer in peers]) == [3.0, 3.0]

        def gloo_round():
            assert ray.get([peer.allreduce.remote(size) for peer in peers]) == [3.0, 3.0]

        timings = {}
        for label, exchange in (("store", store_round), ("gloo", gloo_round)):
            for _ in range(3):
                exchange()
            seconds = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                exchange()
                seconds.append(time.perf_counter() - started)
            timings[label] = statistics.median(seconds) * 1000
        print(f"{name:>12} {size:>12,} {timings['store']:>16.2f} {timings['gloo']:>18.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
