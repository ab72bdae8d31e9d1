"""Decode audio files to mono float32 at a target rate, validate them, cache the result on disk."""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import SoundformerError

CACHE_ENV = "SOUNDFORMER_CACHE"
CACHE_VERSION = 1  # bump when the decoded representation changes


class AudioError(SoundformerError):
    """One audio file cannot be used; the message names the file and the reason."""


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "soundformer")


def decode(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` -> mono float32 at ``sample_rate``; raise AudioError for unusable files."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        reason = str(exc).split(":", 1)[-1].strip() or "unknown error"
        if "format" in reason.lower() and "recognised" in reason.lower():
            reason = "unsupported or unrecognised format (not wav/flac/ogg/mp3 audio?)"
        raise AudioError(f"{path}: cannot decode: {reason}") from None
    except (RuntimeError, OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode: {exc}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: has zero samples (empty or truncated file)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples; re-export the file")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def native_sample_rate(path: str | Path) -> int | None:
    """The file's own sample rate from its header (None where the header cannot be read)."""
    try:
        return int(sf.info(str(path)).samplerate)
    except (RuntimeError, OSError, TypeError, ValueError):  # LibsndfileError is a RuntimeError
        return None


def _cache_path(path: Path, sample_rate: int) -> Path:
    st = path.stat()
    key = f"v{CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{sample_rate}"
    digest = hashlib.sha1(key.encode()).hexdigest()
    return cache_root() / "audio" / digest[:2] / f"{digest}.npy"


def load(path: str | Path, sample_rate: int, *, cache: bool = True) -> np.ndarray:
    """``decode`` with an on-disk cache keyed by file identity (path, size, mtime) and rate."""
    path = Path(path)
    if not cache or not path.is_file():
        return decode(path, sample_rate)
    target = _cache_path(path, sample_rate)
    if target.exists():
        try:
            return np.load(target)
        except (OSError, ValueError):
            pass  # a damaged cache entry is decoded again below
    audio = decode(path, sample_rate)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as fh:
            np.save(fh, audio)
        os.replace(fh.name, target)
    except OSError:
        pass  # caching is an optimisation; a read-only cache must not stop the run
    return audio


def fit_length(audio: np.ndarray, length: int, policy: str = "pad") -> np.ndarray:
    """Make ``audio`` at least ``length`` samples long by zero padding or looping."""
    if len(audio) >= length:
        return audio
    if policy == "loop":
        reps = -(-length // len(audio))
        return np.tile(audio, reps)[:length]
    return np.pad(audio, (0, length - len(audio)))


@dataclass
class LoadResult:
    audio: list[np.ndarray | None]
    bad: list[tuple[Path, str]]  # (file, reason)


def load_many(
    paths: list[Path], sample_rate: int, *, cache: bool = True, progress: bool = True, threads: int = 2
) -> LoadResult:
    """Load every file; collect the bad ones instead of stopping at the first."""
    from tqdm.auto import tqdm

    def one(p: Path):
        try:
            return load(p, sample_rate, cache=cache), None
        except AudioError as exc:
            return None, str(exc)

    audio: list[np.ndarray | None] = []
    bad: list[tuple[Path, str]] = []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = pool.map(one, paths)
        for p, (clip, err) in tqdm(
            zip(paths, results), total=len(paths), desc="loading audio", unit="clip",
            disable=not progress, leave=False,
        ):
            audio.append(clip)
            if err:
                bad.append((p, err))
    return LoadResult(audio, bad)
