"""Inference latency per preset on CPU: PyTorch eager vs ONNX Runtime.

One 5-second clip at batch 1 (median and p95 over repeats) and throughput at batch 32 clips.

    python benchmarks/latency.py [--presets a,b] [--repeats 20] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch
from common import build, clip_batch, median, p95, timeit

from soundformer.config import preset_names
from soundformer.export import set_matmul_dft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=",".join(preset_names()))
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch / onnxruntime threads (0 = all cores)")
    args = ap.parse_args()
    import onnxruntime as ort

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"# latency on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {threads} threads")
    print("| preset | engine | batch-1 median (ms) | batch-1 p95 (ms) | batch-32 throughput (clips/s) |")
    print("|---|---|---|---|---|")
    for preset in args.presets.split(","):
        cfg, model = build(preset)
        model.eval()
        heavy = cfg.model.name == "seed_transformer"
        reps = max(3, args.repeats // 5) if heavy else args.repeats
        one, many = clip_batch(cfg, 1), clip_batch(cfg, 32)
        with torch.no_grad():
            lat = timeit(lambda: model(one), repeats=reps, warmup=2)
            thr = timeit(lambda: model(many), repeats=2 if heavy else 3)
        print(f"| {preset} | PyTorch eager | {1e3 * median(lat):.1f} | {1e3 * p95(lat):.1f} | {32 / median(thr):.1f} |",
              flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            set_matmul_dft(model, True)
            axes = {"waveform": {0: "batch", 1: "samples"} if model.any_length else {0: "batch"}}
            torch.onnx.export(model, (one,), str(path), input_names=["waveform"], output_names=["logits"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            o1, o32 = one.numpy(), many.numpy()
            lat = timeit(lambda: sess.run(None, {"waveform": o1}), repeats=reps, warmup=2)
            thr = timeit(lambda: sess.run(None, {"waveform": o32}), repeats=2 if heavy else 3)
            print(f"| {preset} | ONNX Runtime | {1e3 * median(lat):.1f} | {1e3 * p95(lat):.1f} | "
                  f"{32 / median(thr):.1f} |", flush=True)


if __name__ == "__main__":
    main()
