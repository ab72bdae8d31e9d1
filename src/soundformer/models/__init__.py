"""Models: every one maps a (B, N) waveform batch to (B, n_classes) logits.

Each model is ``frontend`` (waveform -> features) -> ``embed_features`` (features -> clip
embedding) -> ``head`` (embedding -> logits), so training can augment the features in between
and ``embed`` can return the embedding. ``EnsembleClassifier`` holds several such models (one
per front-end) and averages their probabilities; ``members()`` lists the single models of either.
Front-ends whose features are standardised with statistics of the training clips derive from
``StandardisedFrontEnd`` (``train.fit_normalisation`` fills them in).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import MODULATION_MEMBER, Config
from ..errors import SoundformerError
from ..features import LogMel, ModulationSpectrum
from .cnn import LogMelConvStem, SeedConvStem
from .transformer import CLSEncoder

__all__ = ["AudioClassifier", "EnsembleClassifier", "ModulationLinear", "build_model", "count_parameters"]


class WaveformFrontEnd(nn.Module):
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return wav.unsqueeze(1)  # (B, 1, N)


class StandardisedFrontEnd(nn.Module):
    """Waveform -> ``raw`` features (..., T) -> standardised with per-feature ``mean`` and ``std``
    buffers over the last (time) axis, fitted on the training clips."""

    mean: torch.Tensor
    std: torch.Tensor

    def raw(self, wav: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return (self.raw(wav) - self.mean) / self.std


class LogMelFrontEnd(StandardisedFrontEnd):
    """Waveform -> log-mel (or PCEN-mel), standardised per mel bin with statistics of the training data."""

    def __init__(self, *, sample_rate, n_fft, hop_length, n_mels, f_min, f_max, compression="log", delta_width=0,
                 pcen=None):
        super().__init__()
        self.logmel = LogMel(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                             n_mels=n_mels, f_min=f_min, f_max=f_max, compression=compression,
                             delta_width=delta_width, pcen=pcen)
        shape = (n_mels, 1) if self.logmel.channels == 1 else (self.logmel.channels, n_mels, 1)
        self.register_buffer("mean", torch.zeros(shape))  # (M, 1) or (C, M, 1)
        self.register_buffer("std", torch.ones(shape))

    def raw(self, wav: torch.Tensor) -> torch.Tensor:
        return self.logmel(wav)  # (B, M, T) or (B, C, M, T)


class ModulationFrontEnd(StandardisedFrontEnd):
    """Waveform -> modulation features (``features.ModulationSpectrum``), each standardised with
    statistics of the training clips."""

    def __init__(self, **spectrum):
        super().__init__()
        self.modulation = ModulationSpectrum(**spectrum)
        self.register_buffer("mean", torch.zeros(self.modulation.n_features, 1))  # (F, 1)
        self.register_buffer("std", torch.ones(self.modulation.n_features, 1))

    def raw(self, wav: torch.Tensor) -> torch.Tensor:
        # features of any length compare (ModulationSpectrum), so a whole clip is read, as log-mel reads it
        return self.modulation(wav).unsqueeze(-1)  # (B, F, 1): one "frame" per input

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return super().forward(wav).squeeze(-1)  # (B, F)


class AudioClassifier(nn.Module):
    """Base class: frontend -> embed_features -> head."""

    frontend: nn.Module
    head: nn.Module
    uses_logmel = False  # a (B, M, T) spectrogram front-end: SpecAugment and the equaliser apply
    any_length = False  # takes inputs of any length, not only window_samples (exported with a dynamic time axis)

    def embed_features(self, feats: torch.Tensor, need_weights: bool = False):
        raise NotImplementedError

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed_features(self.frontend(wav))[0])  # (B, n_classes)

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.frontend(wav))[0]  # (B, D)

    def members(self) -> list[AudioClassifier]:
        """The single models inside: this one, or an ensemble's members."""
        return [self]


class SeedCNN1d(AudioClassifier):
    """Architecture 1: the report's 1D CNN, one linear layer over the flattened features."""

    def __init__(self, *, channels: list[int], window_samples: int, n_classes: int):
        super().__init__()
        self.frontend = WaveformFrontEnd()
        self.stem = SeedConvStem(channels=channels)
        n_features = self.stem.out_channels * (window_samples // self.stem.reduction)
        self.head = nn.Linear(n_features, n_classes)

    def embed_features(self, feats, need_weights=False):
        return self.stem(feats).flatten(1), None  # (B, C * N / 8)


class SeedTransformer(AudioClassifier):
    """Architecture 2: the seed CNN's output as tokens -> CLS encoder -> linear classifier.

    ``token_layout="channels"`` is the report's reading: each of the C channels is a token whose
    vector is its N/8 time steps (so model dim = N/8 = 2000). ``"time"`` makes each time step a
    token of C features, projected to ``dim``.
    """

    def __init__(self, *, channels, window_samples, n_classes, token_layout, dim, depth, heads,
                 mlp_dim, dropout, attn_dropout, drop_path, norm_first, positions, max_tokens, fused,
                 readout: str = "cls"):
        super().__init__()
        self.frontend = WaveformFrontEnd()
        self.stem = SeedConvStem(channels=channels)
        steps = window_samples // self.stem.reduction
        self.token_layout = token_layout
        token_dim = steps if token_layout == "channels" else self.stem.out_channels
        self.to_tokens = nn.Identity() if token_dim == dim else nn.Linear(token_dim, dim)
        self.encoder = CLSEncoder(dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim, dropout=dropout,
                                  attn_dropout=attn_dropout, drop_path=drop_path, norm_first=norm_first,
                                  positions=positions, max_tokens=max_tokens, fused=fused,
                                  activation=nn.ReLU, readout=readout)
        self.head = nn.Linear(dim, n_classes)

    def embed_features(self, feats, need_weights=False):
        x = self.stem(feats)  # (B, C, N / 8)
        if self.token_layout == "time":
            x = x.transpose(1, 2)  # (B, N / 8, C)
        return self.encoder(self.to_tokens(x), need_weights)  # (B, D)


class LogMelCNN(AudioClassifier):
    """Compact 2D CNN on log-mel: conv blocks, global mean + max pooling, linear."""

    uses_logmel = any_length = True

    def __init__(self, *, frontend: LogMelFrontEnd, channels, dropout, n_classes, double: bool = False,
                 stride_time: int = 1, pool_kind: str = "avg", first_kernel_time: int = 3):
        super().__init__()
        self.frontend = frontend
        self.stem = LogMelConvStem(channels=channels, pool_time=2, double=double, stride_time=stride_time,
                                   in_channels=frontend.logmel.channels, pool_kind=pool_kind,
                                   first_kernel_time=first_kernel_time)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.stem.out_channels, n_classes)

    def embed_features(self, feats, need_weights=False):
        x = self.stem(feats).mean(dim=2)  # (B, C, T'): average over frequency
        x = x.mean(dim=2) + x.amax(dim=2)  # (B, C): mean + max over time
        return self.drop(x), None


class LogMelTransformer(AudioClassifier):
    """Conv stem over log-mel -> one token per time step -> CLS encoder -> linear classifier."""

    uses_logmel = any_length = True

    def __init__(self, *, frontend: LogMelFrontEnd, n_mels, channels, pool_time, stem_double, n_classes,
                 dim, depth, heads, mlp_dim, dropout, attn_dropout, drop_path, norm_first, positions,
                 max_tokens, fused, stem_stride: int = 1, readout: str = "cls", stem_pool: str = "avg",
                 stem_kernel_time: int = 3):
        super().__init__()
        self.frontend = frontend
        self.stem = LogMelConvStem(channels=channels, pool_time=pool_time, double=stem_double, stride_time=stem_stride,
                                   in_channels=frontend.logmel.channels, pool_kind=stem_pool,
                                   first_kernel_time=stem_kernel_time)
        freq_bins = max(1, n_mels // self.stem.freq_reduction)
        self.to_tokens = nn.Linear(self.stem.out_channels * freq_bins, dim)
        self.encoder = CLSEncoder(dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim, dropout=dropout,
                                  attn_dropout=attn_dropout, drop_path=drop_path, norm_first=norm_first,
                                  positions=positions, max_tokens=max_tokens, fused=fused, readout=readout)
        self.head = nn.Linear(dim, n_classes)

    def embed_features(self, feats, need_weights=False):
        x = self.stem(feats)  # (B, C, M', T')
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T', C * M'): one token per time step
        return self.encoder(self.to_tokens(x), need_weights)  # (B, D)


class ModulationLinear(AudioClassifier):
    """A linear classifier on modulation spectra and band levels: a weak model on its own, but one
    that hears how fast each band's loudness beats, which the spectrogram models' 20-ms hop
    smooths away; meant as an ensemble member (``model.ensemble: [log, pcen, modulation]``)."""

    any_length = True

    def __init__(self, *, frontend: ModulationFrontEnd, dropout: float, n_classes: int):
        super().__init__()
        self.frontend = frontend
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(frontend.modulation.n_features, n_classes)

    def embed_features(self, feats, need_weights=False):
        return self.drop(feats), None  # (B, F)


class EnsembleClassifier(AudioClassifier):
    """Several complete classifiers on the same waveform, one per front-end; probabilities averaged.

    Training gives each member its own loss, features and augmentation draws on the same batches
    (``train.TrainStep``), so the members learn as if trained apart (unless
    ``train.mutual_learning`` ties them together). A log-mel and a PCEN member make different
    mistakes, which is what the average gains from (docs/RESULTS.md).
    """

    def __init__(self, *, members: list[AudioClassifier]):
        super().__init__()
        self.models = nn.ModuleList(members)
        self.uses_logmel = all(m.uses_logmel for m in members)
        self.any_length = all(m.any_length for m in members)

    def members(self) -> list[AudioClassifier]:
        return list(self.models)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(wav).float().softmax(-1) for m in self.models]).mean(0)  # (B, n_classes)
        # log of the mean probability: softmax of it gives the average back, so callers (predict,
        # evaluation, exported graphs) treat it as logits
        return probs.clamp_min(1e-12).log()

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed(wav) for m in self.models], dim=-1)  # (B, sum of member dims)


def build_model(cfg: Config, n_classes: int) -> AudioClassifier:
    """ModelConfig (+ audio/feature settings) -> an initialised model."""
    if n_classes < 2:
        raise SoundformerError(f"a classifier needs at least 2 classes, got {n_classes}")
    m, a, f = cfg.model, cfg.audio, cfg.features
    if m.ensemble:  # one member per front-end: the configured model per compression, or the modulation model
        pools = m.member_stem_pools or [m.stem_pool] * len(m.ensemble)

        def member(kind: str, pool: str) -> Config:
            alone = dataclasses.replace(m, ensemble=[], member_stem_pools=[], stem_pool=pool)
            if kind == MODULATION_MEMBER:
                return dataclasses.replace(cfg, model=dataclasses.replace(alone, name="modulation_linear"))
            return dataclasses.replace(cfg, model=alone, features=dataclasses.replace(f, compression=kind))

        return EnsembleClassifier(members=[build_model(member(kind, pool), n_classes)
                                           for kind, pool in zip(m.ensemble, pools)])
    if m.name == "modulation_linear":
        frontend = ModulationFrontEnd(sample_rate=a.sample_rate, bands=f.modulation_bands,
                                      bins=f.modulation_bins, window_seconds=f.modulation_window,
                                      hop_seconds=f.modulation_hop, f_max=f.f_max)
        return ModulationLinear(frontend=frontend, dropout=m.dropout, n_classes=n_classes)
    enc = dict(dim=m.dim, depth=m.depth, heads=m.heads, mlp_dim=m.mlp_dim, dropout=m.dropout,
               attn_dropout=m.attn_dropout, drop_path=m.drop_path, norm_first=m.norm_first,
               positions=m.positions, max_tokens=m.max_tokens, fused=m.attention == "fused",
               readout=m.readout)
    if m.name in ("seed_cnn", "seed_transformer"):  # fixed-size models: built for one window length
        window = int(round(a.window_seconds * a.sample_rate))
        reduction = 2 ** len(m.channels)
        if window < reduction:
            raise SoundformerError(f"audio.window_seconds={a.window_seconds} is too short for the seed CNN")
        if m.name == "seed_cnn":
            return SeedCNN1d(channels=m.channels, window_samples=window, n_classes=n_classes)
        return SeedTransformer(channels=m.channels, window_samples=window, n_classes=n_classes,
                               token_layout=m.token_layout, **enc)
    frontend = LogMelFrontEnd(sample_rate=a.sample_rate, n_fft=f.n_fft, hop_length=f.hop_length,
                              n_mels=f.n_mels, f_min=f.f_min, f_max=f.f_max, compression=f.compression,
                              delta_width=f.delta_width,
                              pcen=dict(time_constant=f.pcen_time_constant, gain=f.pcen_gain, bias=f.pcen_bias,
                                        power=f.pcen_power))
    if m.name == "logmel_cnn":
        return LogMelCNN(frontend=frontend, channels=m.channels, dropout=m.dropout, n_classes=n_classes,
                         double=m.stem_double, stride_time=m.stem_stride, pool_kind=m.stem_pool,
                         first_kernel_time=m.stem_kernel_time)
    return LogMelTransformer(frontend=frontend, n_mels=f.n_mels, channels=m.channels,
                             pool_time=m.pool_time, stem_double=m.stem_double, stem_stride=m.stem_stride,
                             stem_pool=m.stem_pool, stem_kernel_time=m.stem_kernel_time,
                             n_classes=n_classes, **enc)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts; buffers such as BN statistics excluded."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


def count_macs(model: nn.Module, n_samples: int) -> int:
    """Multiply-accumulates of one forward pass on one window of ``n_samples``."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, n_samples))
    model.train(was_training)
    return counter.get_total_flops() // 2
