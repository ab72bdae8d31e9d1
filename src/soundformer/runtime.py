"""The one place that decides the device, CPU thread count and RNG seeds."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import sys
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


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_HEAP_KEPT = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the heap instead of handing it back to the system.

    glibc gives each block above 32 MB its own fresh mapping and unmaps it when freed; the
    first conv block's activations are 66 MB for a batch of 32 clips, so every training step
    page-faulted and zeroed them again (50,000-137,000 faults per step on the 2-core CPU; alone,
    keeping them makes a step of the preset 1.1-1.2x faster: docs/PERFORMANCE.md). Memory the
    process once used stays reserved for it instead (about 12 % more peak memory), and a
    training process reuses it every step. Returns whether it applied (Linux with glibc;
    elsewhere nothing changes). Once per process; ``SOUNDFORMER_MALLOC=system`` leaves the
    allocator alone.
    """
    global _HEAP_KEPT
    if _HEAP_KEPT:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("SOUNDFORMER_MALLOC", "") == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their mallopt differs
            return False
        # serve large blocks from the heap (no mmap), and never trim the heap's top back
        _HEAP_KEPT = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError, ctypes.ArgumentError):
        return False
    return _HEAP_KEPT


def place_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device``; on a CPU, also store its conv weights channels-last and
    keep freed memory (``keep_freed_memory``). oneDNN's 2-D convolutions, batch norm and pooling
    then run in (B, H, W, C) order: a training step of the preset is about 1.2x faster on the
    2-core CPU, 1.4x with the memory kept (docs/PERFORMANCE.md). The function computed is the
    same; the order of the sums differs slightly."""
    model.to(device)
    if device.type == "cpu":
        keep_freed_memory()
        model.to(memory_format=torch.channels_last)  # only 4-D weights change: the 2-D convolutions
    return model


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
