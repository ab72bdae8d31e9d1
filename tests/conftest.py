"""Shared fixtures: tiny generated data sets in every layout, and a private cache folder."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ESC10 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "esc10"
CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cache and default-data folder: nothing leaks between tests."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SOUNDFORMER_CACHE", str(cache))
    monkeypatch.setenv("SOUNDFORMER_DATA", str(cache / "no-default-data"))
    return cache


def tone(class_index: int, seconds: float = 1.0, sr: int = 8000, seed: int = 0) -> np.ndarray:
    """A clip whose class is audible: a tone at 300 * (class + 1) Hz plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    freq = 300.0 * (class_index + 1)
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def write_esc10(root: Path, *, folds: int = 5, per_fold: int = 1, classes=CLASSES, seconds=1.0, sr=8000) -> Path:
    for c, name in enumerate(classes):
        folder = root / f"{c + 1:03d} - {name}"
        folder.mkdir(parents=True)
        for fold in range(1, folds + 1):
            for k in range(per_fold):
                sf.write(folder / f"{fold}-{1000 * c + 10 * fold + k}-A.wav",
                         tone(c, seconds, sr, seed=100 * c + 10 * fold + k), sr)
    return root


@pytest.fixture
def tiny_esc10(tmp_path) -> Path:
    return write_esc10(tmp_path / "esc10")


@pytest.fixture
def tiny_esc50(tmp_path) -> Path:
    root = tmp_path / "esc50"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows = []
    names = ["dog", "rain", "airplane", "cat"]
    esc10 = {"dog": True, "rain": True, "airplane": False, "cat": False}
    for target, name in enumerate(names):
        for fold in range(1, 6):
            fname = f"{fold}-{500 + target}{fold}-A-{target}.wav"
            sf.write(root / "audio" / fname, tone(target, 0.5, seed=target * 10 + fold), 8000)
            rows.append([fname, fold, target, name, esc10[name], f"{500 + target}{fold}", "A"])
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    root = tmp_path / "folder"
    for c, name in enumerate(CLASSES):
        for k in range(5):
            sub = root / name / ("nested/deeper" if k % 2 else "")
            sub.mkdir(parents=True, exist_ok=True)
            sf.write(sub / f"clip{k}.flac", tone(c, 0.6, seed=c * 10 + k), 8000)
    return root


@pytest.fixture
def real_esc10_subset(tmp_path) -> Path:
    """Two real ESC-10 clips per class for 3 classes, one per fold for folds 1-2 (6 files)."""
    if not ESC10.exists():
        pytest.skip("real ESC-10 not available")
    root = tmp_path / "real"
    for class_dir in sorted(ESC10.iterdir())[:3]:
        if not class_dir.is_dir():
            continue
        target = root / class_dir.name
        target.mkdir(parents=True)
        for fold in (1, 2):
            src = sorted(class_dir.glob(f"{fold}-*.ogg"))[0]
            shutil.copy(src, target / src.name)
    return root
