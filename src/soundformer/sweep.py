"""``soundformer sweep``: a grid over config keys, each point cross-validated, ranked by mean
validation accuracy (never by test accuracy: the test folds only report)."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable
from pathlib import Path

from .config import apply_override, load_config, validate
from .cv import run_cv
from .data.sources import Manifest
from .errors import SoundformerError

# the standard protocol's validation slice when the preset trains on every training clip
SWEEP_VAL_FRACTION = 0.1


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid = {}
    for item in items:
        if "=" not in item:
            raise SoundformerError(f"--grid expects key=v1,v2,... (e.g. train.lr=1e-3,3e-4), got '{item}'")
        key, values = item.split("=", 1)
        choices = [v for v in values.split(",") if v != ""]
        if not choices:
            raise SoundformerError(f"--grid {key} has no values")
        grid[key.strip()] = choices
    return grid


def point_name(point: dict[str, str]) -> str:
    text = "_".join(f"{k.split('.')[-1]}-{v}" for k, v in point.items())
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)


def run_sweep(preset: str, overrides: list[str], grid: dict[str, list[str]], manifest: Manifest, data_path: str,
              out: Path, *, protocol: str, jobs: int = 1, launcher: str = "local", ray_address: str | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    configs, given_validation = [], False
    for point in points:  # validate every point before training any
        cfg = load_config(preset, overrides, protocol=protocol)
        for key, value in point.items():
            apply_override(cfg, f"{key}={value}")
        validate(cfg)
        if protocol == "standard" and cfg.train.val_fraction == 0:
            cfg.train.val_fraction, given_validation = SWEEP_VAL_FRACTION, True
        cfg.data.path = data_path
        configs.append(cfg)
    if given_validation:
        log(f"sweep: points are ranked by validation accuracy, so train.val_fraction=0 becomes "
            f"{SWEEP_VAL_FRACTION} (a validation slice of the training folds)")
    rows = []
    for i, (point, cfg) in enumerate(zip(points, configs), start=1):
        name = point_name(point)
        log(f"[sweep {i}/{len(points)}] {name}")
        s = run_cv(cfg, manifest, out / name, protocol=protocol, jobs=jobs, launcher=launcher,
                   ray_address=ray_address, progress=progress, log=log)
        rows.append({"point": name, **point, "val_acc_mean": s["val_acc_mean"], "test_acc_mean": s["test_acc_mean"],
                     "test_acc_std": s["test_acc_std"], "folder": str(out / name)})
    rows.sort(key=lambda r: -r["val_acc_mean"])
    for rank, r in enumerate(rows, start=1):
        r["rank"] = rank
    with open(out / "sweep_summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "sweep_summary.json").write_text(json.dumps(rows, indent=2))
    return rows
