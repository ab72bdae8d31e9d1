"""Clips in memory -> training windows and evaluation windows as tensors."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import fit_length


class WindowDataset(Dataset):
    """Training samples: ``windows_per_clip`` windows of ``window`` samples from each clip.

    With ``random_crop`` each window starts at a random position (a time shift); otherwise the
    windows are evenly spaced over the clip (the report's fixed 1-second windows). With ``crop``
    (samples, at most ``window``) each sample is that much shorter: clips are still filled to a
    whole window first (``short_policy``), as evaluation fills them, and then cropped.
    """

    def __init__(self, clips: list[np.ndarray], labels: list[int], *, window: int,
                 windows_per_clip: int = 1, random_crop: bool = True, short_policy: str = "pad",
                 crop: int | None = None):
        self.clips = [torch.from_numpy(fit_length(c, window, short_policy)) for c in clips]
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.length = min(crop, window) if crop else window  # samples per training example
        self.per_clip, self.random_crop = windows_per_clip, random_crop

    def __len__(self) -> int:
        return len(self.clips) * self.per_clip

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip_index, k = divmod(index, self.per_clip)
        clip = self.clips[clip_index]
        room = len(clip) - self.length
        if self.random_crop:
            start = int(torch.randint(0, room + 1, ()).item())
        else:
            start = round(room * k / (self.per_clip - 1)) if self.per_clip > 1 else room // 2
        return clip[start : start + self.length], self.labels[clip_index]  # (N,), ()


def window_starts(length: int, window: int, hop: int) -> list[int]:
    """Start samples of windows every ``hop`` over ``length`` samples; the last one ends at the end."""
    length = max(length, window)
    starts = list(range(0, length - window + 1, hop))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def clip_windows(clip: np.ndarray, window: int, hop: int, short_policy: str = "pad") -> torch.Tensor:
    """Cover a clip with windows of ``window`` samples (see ``window_starts``)."""
    clip = fit_length(clip, window, short_policy)
    starts = window_starts(len(clip), window, hop)
    x = torch.from_numpy(clip)
    return torch.stack([x[s : s + window] for s in starts])  # (W, window)
