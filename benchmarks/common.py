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


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = median(timeit(lambda: torch.mm(a, b), repeats=repeats, warmup=2))
    return 2 * n**3 / t / 1e9
