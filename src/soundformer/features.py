"""Features and batch augmentations, all in torch so they run on CPU or GPU.

- ``LogMel``: waveform -> log-mel spectrogram (``torch.stft`` + a librosa mel filterbank), with
  an alternative DFT-as-convolution path that exports to ONNX.
- ``spec_augment``, ``mixup``, ``random_gain``, ``time_shift``: vectorised batch augmentations.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class LogMel(nn.Module):
    """(B, N) waveform -> (B, n_mels, T) natural-log mel power, T = 1 + N // hop_length.

    Matches ``librosa.feature.melspectrogram(center=True, pad_mode="constant", power=2)``
    followed by ``log(mel + eps)``.
    """

    def __init__(
        self, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
        f_min: float = 0.0, f_max: float = 0.0, eps: float = 1e-6,
    ):
        super().__init__()
        self.n_fft, self.hop_length, self.eps = n_fft, hop_length, eps
        fb = librosa.filters.mel(
            sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max or sample_rate / 2
        )
        self.register_buffer("mel_fb", torch.from_numpy(fb).float(), persistent=False)  # (M, F)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)  # (n_fft,)
        # DFT basis for the export-friendly path: (real, imag) = frames @ basis
        k = np.arange(n_fft // 2 + 1)
        n = np.arange(n_fft)
        angle = 2 * np.pi * np.outer(n, k) / n_fft
        win = np.asarray(self.window)[:, None]
        basis = np.concatenate([np.cos(angle) * win, -np.sin(angle) * win], axis=1)
        self.register_buffer("dft_basis", torch.from_numpy(basis).float(), persistent=False)
        self.use_matmul_dft = False  # set by export: ONNX has no complex STFT everywhere

    def power_spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        if self.use_matmul_dft:  # a strided convolution with the windowed DFT basis
            pad = self.n_fft // 2
            x = nn.functional.pad(wav.unsqueeze(1), (pad, pad))  # (B, 1, N + n_fft)
            kernel = self.dft_basis.t().unsqueeze(1)  # (2F, 1, n_fft)
            spec = nn.functional.conv1d(x, kernel, stride=self.hop_length)  # (B, 2F, T)
            real, imag = spec.chunk(2, dim=1)
            return real.square() + imag.square()  # (B, F, T)
        spec = torch.stft(
            wav, self.n_fft, self.hop_length, window=self.window, center=True,
            pad_mode="constant", return_complex=True,
        )  # (B, F, T)
        return spec.real.square() + spec.imag.square()

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mel_fb @ self.power_spectrogram(wav.float())  # (B, M, T)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wav) + self.eps)  # (B, M, T)


def spec_augment(
    spec: torch.Tensor, *, freq_masks: int, freq_width: int, time_masks: int, time_width: int
) -> torch.Tensor:
    """Zero random frequency and time bands of a (B, M, T) batch (in normalised units)."""
    B, M, T = spec.shape
    keep = torch.ones(B, M, T, dtype=torch.bool, device=spec.device)
    for n_masks, width, size, dim in ((freq_masks, freq_width, M, 1), (time_masks, time_width, T, 2)):
        if n_masks == 0 or width == 0:
            continue
        w = torch.randint(0, width + 1, (B, n_masks))
        start = (torch.rand(B, n_masks) * (size - w).clamp(min=0)).long()
        pos = torch.arange(size)
        band = (pos >= start[..., None]) & (pos < (start + w)[..., None])  # (B, n, size)
        band = band.any(1).to(spec.device)  # (B, size)
        keep &= ~(band[:, :, None] if dim == 1 else band[:, None, :])
    return spec * keep


def random_eq(batch: int, n_bins: int, *, max_db: float, points: int) -> torch.Tensor:
    """A random equaliser per example: (B, n_bins) gains in dB, linear between ``points``
    evenly spaced knots whose gains are uniform in +-max_db. Adding it to a log spectrogram
    recolours the sound (microphone, distance, room) while keeping its time structure."""
    knots = (torch.rand(batch, 1, points) * 2 - 1) * max_db  # (B, 1, K)
    return F.interpolate(knots, size=n_bins, mode="linear", align_corners=True)[:, 0]  # (B, M)


def mixup(x: torch.Tensor, y: torch.Tensor, *, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each example with a random partner: inputs and (B, C) soft targets alike."""
    lam = torch.distributions.Beta(alpha, alpha).sample((x.shape[0],))
    lam = torch.maximum(lam, 1 - lam).to(x.device)  # (B,) the example keeps its own label mostly
    perm = torch.randperm(x.shape[0]).to(x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    x = lam.view(shape) * x + (1 - lam.view(shape)) * x[perm]
    y = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
    return x, y


def random_gain(wav: torch.Tensor, *, max_db: float) -> torch.Tensor:
    db = (torch.rand(wav.shape[0], 1) * 2 - 1) * max_db  # (B, 1) uniform in +-max_db
    return wav * (10 ** (db / 20)).to(wav.device)


def time_shift(wav: torch.Tensor, *, max_fraction: float) -> torch.Tensor:
    """Roll each (B, N) waveform circularly by its own random offset of up to
    ``max_fraction`` x N samples either way: the sound moves within the window, with nothing
    lost (ESC clips are silence-padded, so the silence moves too)."""
    B, N = wav.shape
    limit = int(max_fraction * N)
    if limit == 0:
        return wav
    shift = torch.randint(-limit, limit + 1, (B, 1))  # (B, 1)
    index = (torch.arange(N)[None, :] - shift) % N  # (B, N): out[t] = in[t - shift]
    return wav.gather(1, index.to(wav.device))
