"""Print the markdown table of bench/README.md from `graphnet bench --format json` reports.

Each ratio is graphnet / PyTorch from one report (both timed in one process); the "must reach"
column holds the bound issue #14 set for that row, where it set one.
"""
import json
import sys

# (graph, figure, batch) → the ratio a row must reach.
MUST_REACH = {
    **{(graph, "training step", batch): bound
       for graph, bound in (("bench_classic", 1.15), ("lenet5", 1.4), ("cifar_resnet", 1.5))
       for batch in (64, 256)},
    ("bench_classic", "inference", 256): 1.0,
    ("lenet5", "inference", 256): 1.0,
    ("cifar_resnet", "inference", 256): 1.0,
    ("bench_classic", "inference", 1): 1.5,
}
PEAK_MEMORY_BOUND = 0.5
FIGURES = (("training step", "step_ms", "ms"), ("inference", "inference_ms", "ms"),
           ("peak memory", "peak_mib", "MiB"))


ISSUE_NETS = {graph for graph, _, _ in MUST_REACH}
"""The nets issue #14 bounds; the real architectures of `bench/run.sh ... real` have none."""


def bound_for(graph: str, figure: str, batch: int) -> float | None:
    """The must-reach ratio for one row of the table, or None where the issue set none."""
    if figure == "peak memory":
        return PEAK_MEMORY_BOUND if graph in ISSUE_NETS else None
    return MUST_REACH.get((graph, figure, batch))


def main(paths):
    print("| net | batch | figure | graphnet | PyTorch | ratio | must reach | load | others |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    report = None
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            report = json.load(stream)
        theirs, ratio = report["torch"], report["ratio"]
        graph, batch = report["graph"], report["batch_size"]
        load = report.get("load_average") or 0.0
        others = report.get("other_cores")
        others = "—" if others is None else f"{others:.1f}"
        for label, key, unit in FIGURES:
            if report.get(key) is None:
                continue
            bound = bound_for(graph, label, batch)
            verdict = "" if bound is None else (
                f"≤ {bound:g} {'✓' if ratio[key] <= bound else '✗'}")
            print(f"| {graph} | {batch} | {label} | {report[key]:.1f} {unit} | "
                  f"{theirs[key]:.1f} {unit} | {ratio[key]:.2f} | {verdict} | {load:.1f} | {others} |")
    if report is None:
        return
    print()
    print(f"threads: {report['threads']}; BLAS: {report['blas']}; numpy float32 GEMM: "
          f"{report['gemm_gflops']:.0f} GFLOP/s; PyTorch {report['torch_version']}")


if __name__ == "__main__":
    main(sys.argv[1:])
