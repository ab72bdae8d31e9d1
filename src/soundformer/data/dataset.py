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

    With ``min_energy`` > 0 (random crops only) a crop must hold at least that share of the
    energy of the clip's loudest crop of the same length: its start is drawn uniformly among the
    starts that do, on a grid of ``energy_hop`` samples. A clip that is one short event padded
    with silence then never yields a crop of silence alone under the event's label; a steady
    sound (rain) keeps nearly every start.
    """

    def __init__(self, clips: list[np.ndarray], labels: list[int], *, window: int,
                 windows_per_clip: int = 1, random_crop: bool = True, short_policy: str = "pad",
                 crop: int | None = None, min_energy: float = 0.0, energy_hop: int = 160):
        self.clips = [torch.from_numpy(fit_length(c, window, short_policy)) for c in clips]
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.length = min(crop, window) if crop else window  # samples per training example
        self.per_clip, self.random_crop = windows_per_clip, random_crop
        self.energy_hop = energy_hop
        # per clip: the allowed crop starts (None: any start)
        self.starts = [loud_starts(c.numpy(), self.length, min_energy, energy_hop) if min_energy and random_crop
                       else None for c in self.clips]

    def __len__(self) -> int:
        return len(self.clips) * self.per_clip

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip_index, k = divmod(index, self.per_clip)
        clip = self.clips[clip_index]
        room = len(clip) - self.length
        allowed = self.starts[clip_index]
        if allowed is not None:  # a grid point among the loud enough, then anywhere up to the next one
            start = int(allowed[int(torch.randint(0, len(allowed), ()).item())])
            start = min(room, start + int(torch.randint(0, self.energy_hop, ()).item()))
        elif self.random_crop:
            start = int(torch.randint(0, room + 1, ()).item())
        else:
            start = round(room * k / (self.per_clip - 1)) if self.per_clip > 1 else room // 2
        return clip[start : start + self.length], self.labels[clip_index]  # (N,), ()


def crop_energies(clip: np.ndarray, length: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """The starts (multiples of ``hop`` up to ``len(clip) - length``) of ``clip``'s crops of
    ``length`` samples, and each crop's energy (sum of squares)."""
    starts = np.arange(0, len(clip) - length + 1, hop)
    power = np.concatenate([[0.0], np.cumsum(np.square(clip, dtype=np.float64))])  # (N + 1,)
    return starts, power[starts + length] - power[starts]


def crop_energy_shares(clip: np.ndarray, length: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """The starts (see ``crop_energies``) and each crop's energy as a share of the clip's loudest
    crop's (all ones for a silent clip)."""
    starts, energy = crop_energies(clip, length, hop)
    return starts, energy / energy.max() if energy.max() > 0 else np.ones_like(energy)


def loud_starts(clip: np.ndarray, length: int, min_energy: float, hop: int) -> np.ndarray:
    """The starts of the crops that hold at least ``min_energy`` of the energy of the clip's
    loudest crop (every start of a silent clip)."""
    starts, shares = crop_energy_shares(clip, length, hop)
    return starts[shares >= min_energy]


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
