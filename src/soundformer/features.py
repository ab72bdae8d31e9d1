"""Features and batch augmentations, all in torch so they run on CPU or GPU.

- ``LogMel``: waveform -> log-mel spectrogram (``torch.stft`` + a librosa mel filterbank), with
  an alternative DFT-as-convolution path that exports to ONNX; ``compression="pcen"`` puts
  per-channel energy normalisation (``PCEN``) in place of the log, ``"log+pcen"`` gives both as
  two input channels; ``delta_width`` adds each channel's time derivative (``time_delta``).
- ``ModulationSpectrum``: waveform -> how fast each of a few mel bands' loudness beats (the power
  spectrum of each band's log envelope, pooled into log-spaced bins) and each band's level.
- ``spec_augment``, ``mixup`` (``draw_mix`` + ``apply_mix``), ``time_cutmix``, ``mix_waveforms``, ``random_gain``,
  ``time_shift``, ``speed_perturb``, ``random_lowpass``: vectorised batch augmentations.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import CHOICES


class PCEN(nn.Module):
    """Per-channel energy normalisation (Wang et al. 2017) of (B, M, T) mel energies.

    ``(E / (eps + M)**gain + bias)**power - bias**power`` with ``M`` the energy smoothed over time
    per mel band, so slowly varying loudness (a steady background, the recording's level) is
    divided out and onsets stand out. librosa's ``pcen`` runs the smoother as an IIR filter; here
    it is a causal convolution with the same exponential kernel, cut where it falls below 1e-4
    of its start and renormalised, so it runs on any device and exports to ONNX with a dynamic
    time axis. Before the first frame the smoother holds the mean energy of the first time
    constant (librosa's starts near silence, which makes every window open with a false onset).
    """

    def __init__(self, *, sample_rate: int, hop_length: int, time_constant: float = 0.4, gain: float = 0.98,
                 bias: float = 2.0, power: float = 0.5, eps: float = 1e-6):
        super().__init__()
        self.gain, self.bias, self.power, self.eps = gain, bias, power, eps
        t_frames = time_constant * sample_rate / hop_length
        b = (math.sqrt(1 + 4 * t_frames**2) - 1) / (2 * t_frames**2)  # librosa's smoothing coefficient
        taps = max(1, math.ceil(math.log(1e-4) / math.log1p(-b)))
        self.lead = max(1, round(t_frames))  # frames whose mean stands for the past
        kernel = b * (1 - b) ** torch.arange(taps - 1, -1, -1, dtype=torch.float64)  # oldest frame first
        self.register_buffer("kernel", (kernel / kernel.sum()).float().view(1, 1, taps), persistent=False)

    def smooth(self, energy: torch.Tensor) -> torch.Tensor:
        b, m, t = energy.shape
        x = energy.reshape(b * m, 1, t)
        past = x[..., : self.lead].mean(-1, keepdim=True).expand(-1, -1, self.kernel.shape[-1] - 1)
        return F.conv1d(torch.cat([past, x], -1), self.kernel).reshape(b, m, t)  # (B, M, T)

    def forward(self, energy: torch.Tensor) -> torch.Tensor:
        # plain pow instead of librosa's log1p/expm1 form: ONNX has no expm1; float32 loses < 1e-6 here
        agc = torch.pow(self.smooth(energy) + self.eps, -self.gain)  # (B, M, T)
        return torch.pow(energy * agc + self.bias, self.power) - self.bias**self.power


class LogMel(nn.Module):
    """(B, N) waveform -> (B, n_mels, T) natural-log mel power, T = 1 + N // hop_length.

    Matches ``librosa.feature.melspectrogram(center=True, pad_mode="constant", power=2)``
    followed by ``log(mel + eps)``; with ``compression="pcen"``, ``librosa.pcen`` of the mel power
    scaled by ``PCEN_SCALE`` (2**31, librosa's advice for audio in [-1, 1]) instead of the log;
    with ``"log+pcen"``, both stacked: (B, 2, n_mels, T). With ``delta_width`` (odd, >= 3; 0 = off)
    each of those channels is followed by its ``time_delta``: (B, 2, n_mels, T) for one
    compression, (B, 4, n_mels, T) for both. ``pcen``: keyword arguments of ``PCEN`` (time_constant,
    gain, bias, power); None = librosa's defaults.
    """

    PCEN_SCALE = 2.0**31

    def __init__(
        self, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
        f_min: float = 0.0, f_max: float = 0.0, eps: float = 1e-6, compression: str = "log",
        delta_width: int = 0, pcen: dict | None = None,
    ):
        super().__init__()
        self.n_fft, self.hop_length, self.eps = n_fft, hop_length, eps
        if compression not in CHOICES["features.compression"]:
            raise ValueError(f"compression must be one of {CHOICES['features.compression']}, got {compression!r}")
        self.use_log = "log" in compression
        self.pcen = PCEN(sample_rate=sample_rate, hop_length=hop_length, **(pcen or {})) if "pcen" in compression else None
        if delta_width and (delta_width < 3 or delta_width % 2 == 0):
            raise ValueError(f"delta_width must be 0 (off) or an odd number >= 3, got {delta_width}")
        self.delta_width = delta_width
        # 1: (B, M, T); more: (B, C, M, T)
        self.channels = (int(self.use_log) + int(self.pcen is not None)) * (2 if delta_width else 1)
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
        mel = self.mel(wav)  # (B, M, T)
        out = []
        if self.use_log:
            out.append(torch.log(mel + self.eps))
        if self.pcen is not None:
            out.append(self.pcen(mel * self.PCEN_SCALE))
        if self.delta_width:
            out = [c for x in out for c in (x, time_delta(x, self.delta_width))]
        return out[0] if len(out) == 1 else torch.stack(out, 1)  # (B, M, T) or (B, C, M, T)


def time_delta(x: torch.Tensor, width: int) -> torch.Tensor:
    """(..., T) -> (..., T): the least-squares slope over ``width`` frames centred on each frame.

    The classic delta feature (``librosa.feature.delta(x, width=width, mode="nearest")``): the
    edges repeat the first and last frame. A 3x3 convolution sees 3 frames; a width of 9 shows the
    stem how loudness moves over 180 ms at a 20-ms hop.
    """
    half = width // 2
    steps = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)  # (W,)
    kernel = (steps / steps.square().sum()).view(1, 1, width)  # (1, 1, W)
    shape = x.shape
    rows = F.pad(x.reshape(-1, 1, shape[-1]), (half, half), mode="replicate")  # (R, 1, T + W - 1)
    return F.conv1d(rows, kernel).reshape(shape)  # (..., T)


class ModulationSpectrum(nn.Module):
    """(B, N) waveform -> (B, F) modulation features, F = bands * (bins - 1) + 2 * bands.

    A log-mel of ``bands`` bands at a fine hop (default 32-ms window, 5-ms hop: a helicopter's
    rotor beats its loudness at 10-40 Hz, which the classifiers' 20-ms hop smooths away); each
    band's log envelope, mean removed and Hann-tapered over the whole input, goes through a DFT
    written as a matmul (built for the input's frame count, so any length works and the graph
    exports to ONNX with a dynamic time axis); its power, divided by the taper's energy so that
    inputs of different lengths compare, is averaged into ``bins - 1`` log-spaced bins from
    ``lowest_hz`` to the frame rate's Nyquist frequency and logged. Each band's mean and spread
    of log energy over time follow. ``benchmarks/modulation_probe.py --with-spectrum`` computes
    the same features without the division (a constant per feature at a given length).
    """

    def __init__(self, *, sample_rate: int, bands: int, bins: int, window_seconds: float, hop_seconds: float,
                 f_max: float = 0.0, lowest_hz: float = 0.5):
        super().__init__()
        hop = max(1, round(hop_seconds * sample_rate))
        n_fft = max(hop, round(window_seconds * sample_rate))
        self.logmel = LogMel(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=bands, f_max=f_max)
        self.frame_rate = sample_rate / hop
        self.n_features = bands * (bins - 1) + 2 * bands
        edges = torch.from_numpy(np.geomspace(lowest_hz, self.frame_rate / 2, bins)).float()
        self.register_buffer("edges", edges, persistent=False)  # (bins,) Hz

    def dft_and_pool(self, frames: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, 2L) Hann-tapered DFT basis (cos, -sin) and (L, bins - 1) pooling matrix for T frames."""
        n = torch.arange(frames, device=device)
        lines = torch.arange(frames // 2 + 1, device=device)  # modulation frequencies k * frame_rate / T
        angle = (n[:, None] * lines[None, :] % frames).float() * (2 * math.pi / frames)  # exact phase, < 2 pi
        taper = 0.5 - 0.5 * torch.cos(n.float() * (2 * math.pi / max(1, frames - 1)))  # np.hanning(T)
        taper = taper / taper.square().sum().clamp_min(1e-12).sqrt()  # unit energy: lengths compare
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) * taper[:, None]  # (T, 2L)
        freqs = lines.float() * (self.frame_rate / frames)  # (L,)
        lo, hi = self.edges[:-1], self.edges[1:]
        inside = ((freqs[:, None] >= lo) & (freqs[:, None] < hi)).float()  # (L, bins - 1)
        count = inside.sum(0)
        # a bin narrower than the line spacing takes its nearest line
        nearest = (freqs[:, None] - (lo * hi).sqrt()).abs()
        nearest = (nearest == nearest.amin(0, keepdim=True)).float()
        nearest = nearest / nearest.sum(0)
        pool = torch.where(count > 0, inside / count.clamp_min(1), nearest)  # (L, bins - 1): mean over the bin
        return basis, pool

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        log_mel = torch.log(self.logmel.mel(wav) + 1e-8)  # (B, bands, T)
        basis, pool = self.dft_and_pool(log_mel.shape[-1], log_mel.device)
        level = log_mel.mean(-1, keepdim=True)  # (B, bands, 1)
        spectrum = (log_mel - level) @ basis  # (B, bands, 2L)
        real, imag = spectrum.chunk(2, dim=-1)
        power = (real.square() + imag.square()) @ pool  # (B, bands, bins - 1)
        spread = (log_mel - level).square().mean(-1).sqrt()  # (B, bands): std over time
        return torch.cat([torch.log(power + 1e-8).flatten(1), level[..., 0], spread], dim=1)  # (B, F)


def spans(start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
    """(...) starts and lengths -> (..., size) masks, True on positions [start, start + length)."""
    pos = torch.arange(size)
    return (pos >= start[..., None]) & (pos < (start + length)[..., None])


def spec_augment(
    spec: torch.Tensor, *, freq_masks: int, freq_width: int, time_masks: int, time_width: int
) -> torch.Tensor:
    """Zero random frequency and time bands of a (B, M, T) or (B, C, M, T) batch (in normalised
    units); the C channels of one example share its masks."""
    B, M, T = spec.shape[0], spec.shape[-2], spec.shape[-1]
    keep = torch.ones(B, M, T, dtype=torch.bool, device=spec.device)
    for n_masks, width, size, dim in ((freq_masks, freq_width, M, 1), (time_masks, time_width, T, 2)):
        if n_masks == 0 or width == 0:
            continue
        w = torch.randint(0, width + 1, (B, n_masks))
        start = (torch.rand(B, n_masks) * (size - w).clamp(min=0)).long()
        band = spans(start, w, size).any(1).to(spec.device)  # (B, size)
        keep &= ~(band[:, :, None] if dim == 1 else band[:, None, :])
    return spec * (keep if spec.dim() == 3 else keep[:, None])


def random_eq(batch: int, n_bins: int, *, max_db: float, points: int) -> torch.Tensor:
    """A random equaliser per example: (B, n_bins) gains in dB, linear between ``points``
    evenly spaced knots whose gains are uniform in +-max_db. Adding it to a log spectrogram
    recolours the sound (microphone, distance, room) while keeping its time structure."""
    knots = (torch.rand(batch, 1, points) * 2 - 1) * max_db  # (B, 1, K)
    return F.interpolate(knots, size=n_bins, mode="linear", align_corners=True)[:, 0]  # (B, M)


def mixup(x: torch.Tensor, y: torch.Tensor, *, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each example with a random partner: inputs and (B, C) soft targets alike."""
    return apply_mix(x, y, *draw_mix(x.shape[0], alpha=alpha, device=x.device))


def draw_mix(batch: int, *, alpha: float, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """One mixup draw: (B,) weights lam >= 0.5 and a (B,) partner permutation. Drawn apart from
    ``apply_mix`` so that several models (an ensemble's members) can be mixed the same way."""
    lam = torch.distributions.Beta(alpha, alpha).sample((batch,))
    lam = torch.maximum(lam, 1 - lam).to(device)  # (B,) the example keeps its own label mostly
    perm = torch.randperm(batch).to(device)
    return lam, perm


def apply_mix(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (-1,) + (1,) * (x.dim() - 1)
    x = lam.view(shape) * x + (1 - lam.view(shape)) * x[perm]
    y = lam[:, None] * y + (1 - lam[:, None]) * y[perm]
    return x, y


def time_cutmix(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix along time (Yun et al., 2019, in the frames of a spectrogram): each example's frames
    in a random span take a random partner's frames at the same positions, and its (B, C) soft
    target takes the partner's in proportion to the span's share of the frames. The span's share
    is uniform in [0, 1] (CutMix's Beta(1, 1)), its start uniform where it fits. x: (B, ..., T)."""
    B, T = x.shape[0], x.shape[-1]
    length = torch.randint(0, T + 1, (B,))  # (B,) frames taken from the partner
    start = (torch.rand(B) * (T - length + 1)).floor().long()  # (B,) in [0, T - length]
    span = spans(start, length, T)  # (B, T)
    perm = torch.randperm(B).to(x.device)
    x = torch.where(span.view((B,) + (1,) * (x.dim() - 2) + (T,)).to(x.device), x[perm], x)
    share = (length.float() / T).to(y.device)[:, None]  # (B, 1)
    return x, (1 - share) * y + share * y[perm]


def mix_waveforms(wav: torch.Tensor, y: torch.Tensor, *, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Between-class mixing of (B, N) waveforms (Tokozume et al., 2018): each clip is superposed
    with a random partner, the label ratio ``r`` drawn as in ``mixup``. Sounds add in pressure,
    so the quieter clip is boosted until ``r`` is its share of the heard mixture: amplitudes
    p : 1 - p with p = 1 / (1 + 10 ** ((G1 - G2) / 20) * (1 - r) / r), G the clips' RMS levels
    in dB; dividing by sqrt(p^2 + (1 - p)^2) keeps the level of the mixture near the clips'."""
    r = torch.distributions.Beta(alpha, alpha).sample((wav.shape[0],))
    r = torch.maximum(r, 1 - r).to(wav.device)  # (B,) the example keeps its own label mostly
    perm = torch.randperm(wav.shape[0]).to(wav.device)
    level = 20 * torch.log10(wav.float().pow(2).mean(1).sqrt().clamp(min=1e-4))  # (B,) dB; silence floored at -80
    p = 1 / (1 + 10 ** ((level - level[perm]) / 20) * (1 - r) / r)  # (B,)
    mixed = (p[:, None] * wav + (1 - p[:, None]) * wav[perm]) / (p.pow(2) + (1 - p).pow(2)).sqrt()[:, None]
    return mixed.to(wav.dtype), r[:, None] * y + (1 - r[:, None]) * y[perm]


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


def random_crops(wav: torch.Tensor, *, length: int) -> torch.Tensor:
    """Cut each (B, N) waveform to ``length`` samples at its own random start (whole when
    ``length`` >= N): crops of one batch share a length, so they stack."""
    B, N = wav.shape
    if length >= N:
        return wav
    start = torch.randint(0, N - length + 1, (B, 1))  # (B, 1)
    index = start + torch.arange(length)[None, :]  # (B, length)
    return wav.gather(1, index.to(wav.device))


def random_lowpass(wav: torch.Tensor, *, prob: float, sample_rate: int, min_hz: float, max_hz: float,
                   atten_db: float) -> torch.Tensor:
    """Band-limit a random share ``prob`` of (B, N) waveforms, as a recording chain with less
    bandwidth would: each chosen waveform gets its own zero-phase low-pass, whose cutoff is uniform
    on the (HTK) mel scale in [min_hz, max_hz] and whose gain falls linearly in dB from 0 at the
    cutoff to -atten_db one octave above it, and stays there. Applied in the frequency domain over
    the whole window (so circularly; the one-octave slope keeps the filter's response short)."""
    B, N = wav.shape
    chosen = (torch.rand(B) < prob).nonzero()[:, 0]  # (K,) indices of the band-limited examples
    if len(chosen) == 0:
        return wav
    low, high = librosa.hz_to_mel([min_hz, max_hz], htk=True)
    mels = low + torch.rand(len(chosen), 1).double().numpy() * (high - low)  # (K, 1)
    cutoff = torch.from_numpy(librosa.mel_to_hz(mels, htk=True)).float()  # (K, 1) Hz
    freqs = torch.fft.rfftfreq(N, d=1 / sample_rate)[None, :]  # (1, N // 2 + 1)
    octaves_above = torch.log2(freqs.clamp(min=1e-3) / cutoff).clamp(0, 1)  # (K, N // 2 + 1)
    gain = (10 ** (-atten_db * octaves_above / 20)).to(wav.device)
    out = wav.clone()
    index = chosen.to(wav.device)
    out[index] = torch.fft.irfft(torch.fft.rfft(wav[index].float()) * gain, n=N).to(wav.dtype)
    return out


def speed_perturb(wav: torch.Tensor, *, max_change: float) -> torch.Tensor:
    """Play each (B, N) waveform at its own random speed in [1 - max_change, 1 + max_change]:
    tempo and pitch change together, as with a tape played faster or slower (0.1 is about
    +-1.7 semitones). Output sample t reads input position speed x t by linear interpolation;
    a faster clip runs out before the window ends and wraps round to its start, as
    ``time_shift`` does, so the window stays full."""
    B, N = wav.shape
    if max_change == 0:
        return wav
    speed = 1 + (torch.rand(B, 1) * 2 - 1) * max_change  # (B, 1)
    pos = torch.arange(N, dtype=torch.float32)[None, :] * speed  # (B, N) read positions
    left = pos.floor()
    frac = (pos - left).to(device=wav.device, dtype=wav.dtype)  # (B, N)
    left = left.long() % N
    right = ((left + 1) % N).to(wav.device)
    return torch.lerp(wav.gather(1, left.to(wav.device)), wav.gather(1, right), frac)
