"""The one place that decides the device, CPU thread count and RNG seeds."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from .errors import SoundformerError

_FREE_CORES: int | None = None


def _read_proc_stat() -> str:
    return Path("/proc/stat").read_text()


def _busy_cores(interval: float = 0.3) -> float:
    """Cores busy right now (Linux: /proc/stat sampled ``interval`` seconds apart), or the
    1-minute load average where /proc is missing. The load average lags by about a minute, so a
    job that just ended would still count as busy; the sample does not."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in _read_proc_stat().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
        cores = os.cpu_count() or 1
        return cores * (1 - (idle1 - idle0) / max(1, total1 - total0))
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def free_cores() -> int:
    """Cores of this process's CPU set not busy with other work, at least 1; measured once per
    process, before our own training adds to the load (a second job of the same process, the
    next fold of a cross-validation, must not count its predecessor's threads as busy cores)."""
    global _FREE_CORES
    if _FREE_CORES is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        # busy cores are not free: two busy threads per core run far slower than one
        _FREE_CORES = max(1, min(cores, round(cores - _busy_cores())))
    return _FREE_CORES


def threads_per_job(jobs: int = 1) -> int:
    """The automatic thread count: the free cores split between ``jobs`` parallel jobs."""
    return max(1, free_cores() // max(1, jobs))


def set_threads(threads: int = 0, jobs: int = 1) -> int:
    """Use ``threads`` CPU threads, or split the free cores between ``jobs`` parallel jobs.

    Oversubscribed cores are slow (two busy threads on two shared cores can run several times
    slower than one), so the automatic choice counts only cores that are not already busy.
    Set ``train.threads`` for runs that must be bit-identical across machines and loads.
    """
    if threads <= 0:
        threads = threads_per_job(jobs)
    torch.set_num_threads(threads)
    return threads


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise SoundformerError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """bf16/fp16 autocast on GPU; None (full float32) on CPU or when switched off."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
