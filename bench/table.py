"""Print the markdown table of bench/README.md from `graphnet bench --format json` reports."""
import json
import sys


def main(paths):
    print("| net | batch | figure | graphnet | PyTorch | ratio |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            report = json.load(stream)
        theirs, ratio = report["torch"], report["ratio"]
        for label, key, unit in (("training step", "step_ms", "ms"),
                                 ("inference", "inference_ms", "ms"),
                                 ("peak memory", "peak_mib", "MiB")):
            if report.get(key) is None:
                continue
            print(f"| {report['graph']} | {report['batch_size']} | {label} | "
                  f"{report[key]:.1f} {unit} | {theirs[key]:.1f} {unit} | {ratio[key]:.2f} |")
    print()
    loads = ", ".join(f"{json.load(open(p, encoding='utf-8')).get('load_average') or 0:.1f}"
                      for p in paths)
    print(f"threads: {report['threads']}; BLAS: {report['blas']}; numpy float32 GEMM: "
          f"{report['gemm_gflops']:.0f} GFLOP/s; PyTorch {report['torch_version']}; "
          f"load average at the start of each row: {loads}")


if __name__ == "__main__":
    main(sys.argv[1:])
