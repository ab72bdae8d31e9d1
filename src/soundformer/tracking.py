"""Experiment tracking: metrics.csv always; TensorBoard or Weights & Biases on request."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from .errors import SoundformerError


class Tracker:
    """Writes one metrics.csv row per epoch and forwards to an optional backend."""

    def __init__(self, run_dir: Path, kind: str, config: dict[str, Any], name: str, enabled: bool = True):
        self.enabled = enabled  # False on DDP ranks other than 0: they write nothing
        self.path = run_dir / "metrics.csv"
        self.kind = kind
        self._tb = self._wandb = None
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SoundformerError(
                    "--tracker tensorboard needs the tensorboard package: pip install 'soundformer[tensorboard]'"
                ) from None
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        elif kind == "wandb":
            try:
                import wandb
            except ImportError:
                raise SoundformerError("--tracker wandb needs wandb: pip install 'soundformer[wandb]'") from None
            os.environ.setdefault("WANDB_SILENT", "true")
            self._wandb = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "soundformer"), name=name, config=config,
                dir=str(run_dir), reinit=True,
            )

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh))

    def truncate(self, epochs: int) -> None:
        """On resume: drop rows written after the checkpoint being resumed from."""
        if not self.enabled:
            return
        rows = [r for r in self.rows() if int(r["epoch"]) <= epochs]
        if rows:
            with open(self.path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            self.path.unlink(missing_ok=True)

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        step = int(row["epoch"])
        if self._tb is not None:
            for key, value in row.items():
                if key != "epoch":
                    self._tb.add_scalar(key.replace("_", "/", 1), value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(dict(row), step=step)

    def log_summary(self, summary: dict[str, Any], images: dict[str, Path] | None = None) -> None:
        if self._tb is not None and images:
            import matplotlib.image

            for name, path in images.items():
                self._tb.add_image(name, matplotlib.image.imread(str(path))[..., :3], dataformats="HWC")
        if self._wandb is not None:
            flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}
            self._wandb.summary.update(flat)
            if images:
                import wandb

                self._wandb.log({k: wandb.Image(str(p)) for k, p in images.items()})

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
