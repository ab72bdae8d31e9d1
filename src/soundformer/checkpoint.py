"""Checkpoints: atomic writes, safe loads (``weights_only=True``), one dict format."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import SoundformerError

FORMAT_VERSION = 1


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``:
    a process killed mid-save leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> dict[str, Any]:
    """Load a soundformer checkpoint; refuse anything that needs pickled code to load."""
    path = Path(path)
    if not path.is_file():
        raise SoundformerError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise SoundformerError(
            f"refusing to load {path}: it holds objects other than tensors and plain data "
            f"(weights_only load failed: {first[:160]}). Only load checkpoints you trust, "
            f"written by soundformer."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise SoundformerError(f"cannot read checkpoint {path}: {str(exc)[:200]} (truncated or not a checkpoint?)") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise SoundformerError(f"{path} is not a soundformer checkpoint (no model/config inside)")
    return ckpt
