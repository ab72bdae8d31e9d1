"""Helpers shared by the benchmarks: timing, presets, 5-second clips."""

from __future__ import annotations

import statistics
import time

import torch

from soundformer.config import load_config
from soundformer.models import build_model
from soundformer.train import window_samples

CLIP_SECONDS = 5.0


def build(preset: str, overrides: list[str] | None = None, n_classes: int = 10):
    cfg = load_config(preset, overrides or [])
    return cfg, build_model(cfg, n_classes)


def clip_batch(cfg, clips: int) -> torch.Tensor:
    """``clips`` 5-second clips as the model sees them: one window each for log-mel models,
    five 1-second windows each for the seed models."""
    window = window_samples(cfg)
    per_clip = max(1, round(CLIP_SECONDS / cfg.audio.window_seconds))
    return torch.randn(clips * per_clip, window) * 0.1


def timeit(fn, *, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median(xs):
    return statistics.median(xs)


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def matmul_gflops(n: int = 2048, repeats: int = 5, *, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32, warmup: int = 2) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def mm():
        torch.mm(a, b)
        if a.is_cuda:
            torch.cuda.synchronize()  # time the GPU's work, not the launch

    return 2 * n**3 / median(timeit(mm, repeats=repeats, warmup=warmup)) / 1e9
