"""Training speed per preset, measured side by side against PyTorch's own building blocks.

For each preset (batch of 32 five-second clips, forward + backward + AdamW step):
  1. our model's training throughput (clips/s), hand-written attention;
  2. a twin whose encoder blocks are torch.nn.TransformerEncoderLayer of the same sizes;
  3. our model with the fused scaled_dot_product_attention path;
  4. MACs per clip, achieved GFLOP/s and its share of this machine's float32 matmul rate;
the page faults per training step (memory mapped in afresh: see runtime.keep_freed_memory),
plus the data pipeline (first-pass decode + resample + log-mel, cached, and librosa's path),
and a torch.profiler top-ops table for the recommended model.

    python benchmarks/speed.py [--presets a,b] [--set KEY=VALUE ...] [--steps 10] [--data DIR] [--cv-summary FILE]
                               [--layout trainer|contiguous]

Models are placed as training places them (runtime.place_model: on a CPU, channels-last conv
weights, freed memory kept); `--layout contiguous` and SOUNDFORMER_MALLOC=system undo each.

The twin and the fused path replace the transformer members' blocks; an ensemble's modulation
member (no encoder) runs unchanged in all three.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from common import build, clip_batch, matmul_gflops, median, timeit
from torch import nn

from soundformer.config import preset_names
from soundformer.models import count_macs
from soundformer.runtime import keep_freed_memory, place_model
from soundformer.train import window_samples


class TorchBlock(nn.Module):
    """nn.TransformerEncoderLayer behind our Block's call signature."""

    def __init__(self, ours):
        super().__init__()
        dim = ours.norm1.normalized_shape[0]
        act = "relu" if isinstance(ours.mlp.act, nn.ReLU) else "gelu"
        self.layer = nn.TransformerEncoderLayer(
            dim, ours.attn.heads, ours.mlp.fc1.out_features, dropout=ours.drop.p, activation=act,
            batch_first=True, norm_first=ours.norm_first)

    def forward(self, x, key_padding_mask=None, need_weights=False):
        return self.layer(x), None


def make_twin(model):
    twin = copy.deepcopy(model)
    for member in twin.members():  # each transformer member of an ensemble
        if hasattr(member, "encoder"):
            member.encoder.blocks = nn.ModuleList(TorchBlock(b) for b in member.encoder.blocks)
    return twin


def set_fused(model, fused: bool):
    for m in model.modules():
        if hasattr(m, "fused"):
            m.fused = fused


def training_step(model, x):
    """One forward + backward + AdamW step of ``model`` on batch ``x``, as a closure. On a GPU
    the step runs under bf16 autocast, as training does, and waits for the GPU before returning."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.randint(0, 10, (x.shape[0],), device=x.device)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.is_cuda):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()  # time the GPU's work, not the launch

    return step


def page_faults_per_step(step, steps: int = 2) -> float | None:
    """Minor page faults per call of ``step`` (memory mapped in afresh); None where unmeasurable."""
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


def interleaved_step_times(steps: dict, rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per step of each variant, timed in interleaved rounds (A B C A B C ...)
    so that a slow moment of the machine (another process, frequency changes) hits them all."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate who goes first
            times[name] += timeit(steps[name], repeats=1, warmup=0)
    return {name: median(t) for name, t in times.items()}


def data_pipeline(data: Path, n: int) -> dict:
    import librosa
    import soundfile as sf  # noqa: F401

    from soundformer.data import audio
    from soundformer.data.sources import load_manifest
    from soundformer.features import LogMel

    files = [it.path for it in load_manifest(data).items][:n]
    lm = LogMel(sample_rate=16000, n_fft=1024, hop_length=320, n_mels=64)
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SOUNDFORMER_CACHE"] = cache

        def ours():  # what a training job does: load_many (threaded decode, cached) + batched log-mel
            clips = audio.load_many(files, 16000, progress=False).audio
            with torch.no_grad():
                for i in range(0, len(clips), 16):
                    batch = [torch.from_numpy(c) for c in clips[i : i + 16]]
                    n = max(len(c) for c in batch)
                    lm(torch.stack([torch.nn.functional.pad(c, (0, n - len(c))) for c in batch]))

        t0 = time.perf_counter()
        ours()  # first pass: decode + resample + log-mel, filling the cache
        out["first_pass_clips_s"] = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours()  # second pass: cache hits
        out["cached_clips_s"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for f in files:
        y, _ = librosa.load(f, sr=16000)
        librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=320, n_mels=64)
    out["librosa_clips_s"] = n / (time.perf_counter() - t0)
    out["first_pass_vs_librosa"] = out["first_pass_clips_s"] / out["librosa_clips_s"]
    return out


def profile_top_ops(model, x, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.randint(0, 10, (x.shape[0],))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=",".join(preset_names()))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every preset, as in soundformer (repeatable), "
                         "e.g. --set 'model.ensemble=[log,pcen]'")
    ap.add_argument("--steps", type=int, default=10,
                    help="timed training steps per model, interleaved across the variants (after 1 warm-up)")
    ap.add_argument("--batch", type=int, default=32, help="clips per training step")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "esc10"))
    ap.add_argument("--data-clips", type=int, default=80)
    ap.add_argument("--cv-summary", help="cv_summary.json of a full standard run, to print its wall time")
    ap.add_argument("--profile", action="store_true", help="print torch.profiler top ops for logmel-transformer")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--layout", choices=["trainer", "contiguous"], default="trainer",
                    help="trainer: place the model as training does (channels-last conv weights on a CPU); "
                         "contiguous: the plain (B, C, H, W) layout, for comparison")
    args = ap.parse_args()
    device = torch.device(args.device)
    heap = keep_freed_memory() if device.type == "cpu" else False  # as training does; SOUNDFORMER_MALLOC=system: off
    print(f"# speed on {platform.machine()} ({os.cpu_count()} cores), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}, layout {args.layout}"
          + (", freed memory kept" if heap else "")
          + (f" ({torch.cuda.get_device_name(device)}, bf16 autocast)" if device.type == "cuda" else ""))
    if device.type == "cuda":
        peak = matmul_gflops(8192, repeats=10, device=device, dtype=torch.bfloat16, warmup=3)
        print(f"bf16 matmul (8192^3 torch.mm on the GPU): {peak:.1f} GFLOP/s\n")
    else:
        peak = matmul_gflops()
        print(f"float32 matmul (2048^3 torch.mm): {peak:.1f} GFLOP/s\n")
    print("| preset | ours (clips/s) | nn.TransformerEncoderLayer twin | ours / twin | fused SDPA | fused / twin "
          "| MACs/clip (M) | achieved GFLOP/s | % of matmul |")
    print("|---|---|---|---|---|---|---|---|---|")
    faults = {}
    for preset in [p for p in args.presets.split(",") if p]:  # --presets "" measures the data pipeline only
        cfg, model = build(preset, args.overrides)
        per_clip = max(1, round(5.0 / cfg.audio.window_seconds))
        macs = count_macs(model, window_samples(cfg)) * per_clip  # on CPU, before any training
        if args.layout == "trainer":
            place_model(model, device)
        else:
            model.to(device)
        x = clip_batch(cfg, args.batch).to(device)
        heavy = cfg.model.name == "seed_transformer"
        steps = {"ours": training_step(model, x)}
        if any(hasattr(m, "encoder") for m in model.members()):
            steps["twin"] = training_step(make_twin(model).to(device), x)
            fused = copy.deepcopy(model)
            set_fused(fused, True)
            steps["fused"] = training_step(fused, x)
        t = interleaved_step_times(steps, rounds=1 if heavy and device.type == "cpu" else args.steps)
        t_ours = t["ours"]
        if device.type == "cpu":
            faults[preset] = page_faults_per_step(steps["ours"])
        twin_txt = ratio_txt = fused_txt = fratio_txt = "–"
        if "twin" in t:
            twin_txt, ratio_txt = f"{args.batch / t['twin']:.1f}", f"{t['twin'] / t_ours:.2f}x"
            fused_txt, fratio_txt = f"{args.batch / t['fused']:.1f}", f"{t['twin'] / t['fused']:.2f}x"
        gflops = 3 * 2 * macs * args.batch / t_ours / 1e9  # backward ~ 2x forward
        label = " ".join([preset, *args.overrides])
        print(f"| {label} | {args.batch / t_ours:.1f} | {twin_txt} | {ratio_txt} | {fused_txt} | {fratio_txt} | "
              f"{macs / 1e6:,.0f} | {gflops:.1f} | {100 * gflops / peak:.0f} % |", flush=True)
    for preset, n in faults.items():
        if n is not None:
            print(f"page faults per training step of {preset} (ours, after the timed steps): {n:,.0f}")
    if Path(args.data).exists():
        d = data_pipeline(Path(args.data), args.data_clips)
        print(f"\ndata pipeline on {args.data_clips} ESC-10 clips (decode + resample to 16 kHz + log-mel):")
        print(f"  ours, first pass : {d['first_pass_clips_s']:.1f} clips/s")
        print(f"  ours, cached     : {d['cached_clips_s']:.1f} clips/s")
        print(f"  librosa.load + melspectrogram: {d['librosa_clips_s']:.1f} clips/s "
              f"(first pass is {d['first_pass_vs_librosa']:.1f}x librosa)")
    if args.cv_summary:
        s = json.loads(Path(args.cv_summary).read_text())
        print(f"\nfull cv ({s['protocol']}) of {s['preset']}: training time {s['train_time_s_total'] / 60:.1f} min, "
              f"wall {s.get('wall_time_s_this_call', float('nan')) / 60:.1f} min, test acc {s['test_acc_mean']:.4f}")
    if args.profile:
        cfg, model = build("logmel-transformer", args.overrides)
        if args.layout == "trainer":
            place_model(model, torch.device("cpu"))
        print("\ntorch.profiler, one training step of logmel-transformer (batch 32), top ops by self CPU time:")
        print(profile_top_ops(model, clip_batch(cfg, args.batch)))


if __name__ == "__main__":
    main()
