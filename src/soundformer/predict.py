"""Inference: load a checkpoint with its exact feature settings, classify waveforms or files.

>>> from soundformer import load_model
>>> m = load_model("runs/lt/checkpoints/model.pt")
>>> m.predict_file("dog.wav").top(3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch

from . import checkpoint
from .config import Config, from_dict
from .data import audio as audio_io
from .data.dataset import clip_windows, window_starts
from .data.sources import AUDIO_EXTENSIONS
from .errors import SoundformerError
from .evaluate import crop_length, window_probs
from .models import AudioClassifier, build_model


@dataclass
class Prediction:
    classes: list[str]
    probs: np.ndarray  # (C,) clip probabilities: the mean over windows
    window_probs: np.ndarray  # (W, C)
    window_starts: np.ndarray  # (W,) seconds
    window_seconds: float
    duration_s: float

    @property
    def label(self) -> str:
        return self.classes[int(self.probs.argmax())]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs)[:k]
        return [(self.classes[i], float(self.probs[i])) for i in order]

    def to_dict(self, top_k: int = 3, windows: bool = False) -> dict:
        out = {
            "label": self.label,
            "top_k": [{"class": c, "probability": p} for c, p in self.top(top_k)],
            "probabilities": {c: float(p) for c, p in zip(self.classes, self.probs)},
            "duration_s": self.duration_s,
        }
        if windows:
            out["windows"] = [
                {"start_s": float(s), "end_s": float(min(s + self.window_seconds, self.duration_s)),
                 "label": self.classes[int(p.argmax())], "probability": float(p.max())}
                for s, p in zip(self.window_starts, self.window_probs)
            ]
        return out


def to_mono(waveform, sample_rate: int, target_rate: int) -> np.ndarray:
    """Any (N,), (N, C) or (C, N) array at any rate -> mono float32 at ``target_rate``."""
    x = np.asarray(waveform.detach().cpu() if isinstance(waveform, torch.Tensor) else waveform, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0) if x.shape[0] < x.shape[1] else x.mean(axis=1)
    if x.ndim != 1 or x.size == 0:
        raise SoundformerError(f"expected a non-empty 1-D or 2-D waveform, got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise SoundformerError("the waveform contains NaN or infinite samples")
    if sample_rate <= 0:
        raise SoundformerError(f"sample_rate must be positive, got {sample_rate}")
    if sample_rate != target_rate:
        x = soxr.resample(x, sample_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


class Classifier:
    """A trained model plus the audio/feature settings it was trained with."""

    def __init__(self, model: AudioClassifier, cfg: Config, classes: list[str], device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.cfg, self.classes, self.device = cfg, list(classes), torch.device(device)
        self.sample_rate = cfg.audio.sample_rate
        self.window = int(round(cfg.audio.window_seconds * self.sample_rate))
        self.hop = max(1, int(self.window * cfg.train.eval_hop))

    @property
    def crop_samples(self) -> int:
        """Samples per evaluation crop (``train.eval_crops``): the training crop's length."""
        return crop_length(self.window, self.cfg.augment.crop_fraction)

    # -- core
    @torch.no_grad()
    def _run(self, clips: list[np.ndarray], *, embed: bool, batch_size: int = 32) -> list[np.ndarray]:
        windows = [clip_windows(c, self.window, self.hop, self.cfg.audio.short_policy) for c in clips]
        flat = torch.cat(windows)
        outs = []
        for i in range(0, len(flat), batch_size):
            x = flat[i : i + batch_size].to(self.device)
            y = self.model.embed(x) if embed else window_probs(self.model, x, crops=self.cfg.train.eval_crops,
                                                               crop_length=self.crop_samples)
            outs.append(y.float().cpu())
        flat_out = torch.cat(outs).numpy()
        sizes = np.cumsum([0] + [len(w) for w in windows])
        return [flat_out[a:b] for a, b in zip(sizes[:-1], sizes[1:])]

    def _prediction(self, clip: np.ndarray, window_probs: np.ndarray) -> Prediction:
        starts = np.array(window_starts(len(clip), self.window, self.hop)) / self.sample_rate
        return Prediction(self.classes, window_probs.mean(0), window_probs, starts,
                          self.cfg.audio.window_seconds, len(clip) / self.sample_rate)

    # -- public API
    def predict(self, waveform, sample_rate: int) -> Prediction:
        """Classify one waveform ((N,), (N, C) or (C, N), any rate, any length)."""
        return self.predict_batch([waveform], sample_rate)[0]

    def predict_batch(self, waveforms, sample_rate: int, batch_size: int = 32) -> list[Prediction]:
        clips = [to_mono(w, sample_rate, self.sample_rate) for w in waveforms]
        return [self._prediction(c, p) for c, p in zip(clips, self._run(clips, embed=False, batch_size=batch_size))]

    def predict_file(self, path: str | Path) -> Prediction:
        clip = audio_io.decode(path, self.sample_rate)
        return self._prediction(clip, self._run([clip], embed=False)[0])

    def embed(self, waveform, sample_rate: int) -> np.ndarray:
        """The clip embedding (the CLS representation for transformers), averaged over windows."""
        clip = to_mono(waveform, sample_rate, self.sample_rate)
        return self._run([clip], embed=True)[0].mean(0)

    def embed_file(self, path: str | Path) -> np.ndarray:
        return self._run([audio_io.decode(path, self.sample_rate)], embed=True)[0].mean(0)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    ckpt = checkpoint.load(path)
    cfg = from_dict(ckpt["config"])
    model = build_model(cfg, len(ckpt["classes"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise SoundformerError(f"{path}: weights do not fit the model its config describes ({str(exc)[:200]})") from None
    return Classifier(model, cfg, ckpt["classes"], device)


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders recursed for audio files (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS))
        else:
            out.append(p)
    return out
