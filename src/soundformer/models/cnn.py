"""Convolutional pieces: the report's 1D CNN (stem and classifier) and the log-mel 2D CNN."""

from __future__ import annotations

import torch
from torch import nn

from ..config import STEM_POOLS


class SeedConvStem(nn.Module):
    """The report's feature extractor: (B, 1, N) -> (B, C_last, N / 8).

    Conv1d(k=3, p=1) + BN + ReLU per stage, pooled by 2 with max, max, then average.
    """

    def __init__(self, *, channels: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(channels):
            last = i == len(channels) - 1
            layers += [
                nn.Conv1d(c_in, c_out, kernel_size=3, stride=1, padding=1),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
                nn.AvgPool1d(2) if last else nn.MaxPool1d(2),
            ]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        self.out_channels = c_in
        self.reduction = 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, N / 8)


class AvgMaxPool2d(nn.Module):
    """Average plus maximum over each pooling window: the average keeps a texture's level, the
    maximum keeps a short event's peak that averaging with its quiet neighbours would dilute."""

    def __init__(self, pool: tuple[int, int], ceil_mode: bool = False):
        super().__init__()
        self.avg = nn.AvgPool2d(pool, ceil_mode=ceil_mode)
        self.max = nn.MaxPool2d(pool, ceil_mode=ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avg(x) + self.max(x)  # (B, C, F / pool_f, T / pool_t)


POOLING = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d, "avgmax": AvgMaxPool2d}  # keys: config.STEM_POOLS


def pooling_layer(kind: str, pool: tuple[int, int]) -> nn.Module:
    """The stem's pooling over (freq, time): ``avg``, ``max`` or ``avgmax`` (their sum)."""
    if kind not in POOLING:
        raise ValueError(f"stem pooling must be one of {', '.join(STEM_POOLS)}, got {kind!r}")
    # ceil_mode: a map shorter than the pool (a very short clip) still yields one step
    return POOLING[kind](pool, ceil_mode=True) if pool != (1, 1) else nn.Identity()


class ConvBlock2d(nn.Module):
    """Conv3x3 + BN + ReLU (twice when ``double``), then pooling over (freq, time). ``kernel_time``:
    the (first) convolution's length in time (odd), 3 frequency bins by that many frames."""

    def __init__(self, *, c_in: int, c_out: int, pool: tuple[int, int], double: bool = False, stride_time: int = 1,
                 pool_kind: str = "avg", kernel_time: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, (3, kernel_time), stride=(1, stride_time), padding=(1, kernel_time // 2), bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        ]
        if double:
            layers += [nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers.append(pooling_layer(pool_kind, pool))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, c_out, F / pool_f, T / (stride_time * pool_t))


class LogMelConvStem(nn.Module):
    """(B, M, T) log-mel (or (B, in_channels, M, T)) -> (B, C, M / 2^k, T / (stride * prod(pool))) map.

    ``pool_time``: the time pooling of every block, or one factor per block. ``stride_time``: the
    time stride of the first convolution. Both let a fine hop (10 ms), which keeps faster
    amplitude modulation (a helicopter's rotor), reach the first convolutions with the token
    count of a 20-ms hop: pooling ([4, 2, 2]) at about 1.8x its training time on a CPU (the first
    block's full-resolution maps dominate the step), a stride of 2 at about the same time. On
    ESC-10 the finer hop did not raise accuracy (docs/RESULTS.md, "Ninth session"). ``pool_kind``:
    average (the default), maximum, or their sum (``avgmax``) over each pooling window.
    ``first_kernel_time``: the first convolution's length in frames (odd; the others are 3x3). At a
    20-ms hop, 3 frames (60 ms) see less than one period of a 12-Hz rotor beat, 9 (180 ms) two, long
    enough for a filter tuned to the beat before the pooling aliases it; on ESC-10 it did not help
    (docs/RESULTS.md, "Fifty-first session").
    """

    def __init__(self, *, channels: list[int], pool_time: int | list[int], double: bool = False,
                 in_channels: int = 1, stride_time: int = 1, pool_kind: str = "avg", first_kernel_time: int = 3):
        super().__init__()
        pools = [pool_time] if isinstance(pool_time, int) else list(pool_time)
        if len(pools) == 1:
            pools *= len(channels)
        if len(pools) != len(channels):
            raise ValueError(f"pool_time {pool_time} gives {len(pools)} factors for {len(channels)} blocks")
        blocks, c_in = [], in_channels
        for i, (c_out, pool) in enumerate(zip(channels, pools)):
            blocks.append(ConvBlock2d(c_in=c_in, c_out=c_out, pool=(2, pool), double=double,
                                      stride_time=stride_time if i == 0 else 1, pool_kind=pool_kind,
                                      kernel_time=first_kernel_time if i == 0 else 3))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c_in
        self.freq_reduction = 2 ** len(channels)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.blocks(spec.unsqueeze(1) if spec.dim() == 3 else spec)  # (B, C, M', T')
