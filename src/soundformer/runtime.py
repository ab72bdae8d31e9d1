"""The one place that decides the device, CPU thread count and RNG seeds."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import SoundformerError

_FREE_CORES: int | None = None


def free_cores() -> int:
    """Cores not already busy (1-minute load average), at least 1; measured once per process.

    Measured once because this process's own training raises the load average: a second job
    run by the same process (the next fold of a cross-validation) would otherwise count its
    predecessor's threads as busy cores and run on half of them.
    """
    global _FREE_CORES
    if _FREE_CORES is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        try:  # cores busy with other work are not free: two busy threads per core run far slower
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
        _FREE_CORES = max(1, min(cores, round(cores - load + 0.5)))
    return _FREE_CORES


def set_threads(threads: int = 0, jobs: int = 1) -> int:
    """Use ``threads`` CPU threads, or split the free cores between ``jobs`` parallel jobs.

    Oversubscribed cores are slow (two busy threads on two shared cores can run several times
    slower than one), so the automatic choice counts only cores that are not already busy.
    Set ``train.threads`` for runs that must be bit-identical across machines and loads.
    """
    if threads <= 0:
        threads = max(1, free_cores() // max(1, jobs))
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
