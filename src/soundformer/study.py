"""``soundformer study``: the report's experiments end to end, then the report.

Architecture 1 (seed-cnn), Architecture 2 with 1, 2 and 4 heads (seed-transformer-h*), plus
logmel-cnn and the recommended logmel-transformer, all under the ``report`` protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .config import Config, load_config
from .cv import plan_jobs, run_cv
from .data.sources import Manifest

STUDY_PRESETS = ["seed-cnn", "seed-transformer-h1", "seed-transformer-h2", "seed-transformer-h4",
                 "logmel-cnn", "logmel-transformer"]

# quick: minutes on a 2-core CPU. The seed models see one random 1-s window per clip per epoch
# (not all five), the seed transformer is shrunk (its 2000-dim tokens are projected to 64 dims,
# one block) and every model trains for a few epochs only; all labelled so in the report.
QUICK = {
    "seed-cnn": (["train.epochs=3", "train.windows_per_clip=1", "augment.random_crop=true"],
                 "quick: 3 epochs of one random 1-s window per clip"),
    "seed-transformer": (["train.epochs=3", "train.windows_per_clip=1", "augment.random_crop=true",
                          "model.dim=64", "model.mlp_dim=32", "model.depth=1"],
                         "quick, shrunk: tokens projected 2000->64, 1 block, 3 epochs of 1-s windows"),
    "logmel-cnn": (["train.epochs=6"], "quick: 6 epochs"),
    "logmel-transformer": (["train.epochs=8"], "quick: 8 epochs"),
}


def study_configs(budget: str, data_path: str, extra: list[str] | None = None) -> list[Config]:
    cfgs = []
    for name in STUDY_PRESETS:
        overrides, label = [], ""
        if budget == "quick":
            overrides, label = QUICK["seed-transformer" if name.startswith("seed-transformer") else name]
        cfg = load_config(name, overrides + list(extra or []), protocol="report")
        cfg.data.path = data_path
        if label:
            cfg.description += f" [{label}]"
        cfgs.append(cfg)
    return cfgs


def run_study(cfgs: list[Config], manifest: Manifest, out: Path, *, jobs: int = 1, progress: bool = True,
              log: Callable[[str], None] = print, launcher: str = "local",
              ray_address: str | None = None) -> list[Path]:
    out = Path(out)
    n_jobs = len(plan_jobs(manifest, "report"))
    total_epochs = sum(c.train.epochs for c in cfgs) * n_jobs
    done_epochs = 0
    t0 = time.perf_counter()
    folders = []
    for i, cfg in enumerate(cfgs, start=1):
        log(f"[study {i}/{len(cfgs)}] {cfg.name}: {n_jobs} fold models x {cfg.train.epochs} epochs")
        folder = out / cfg.name
        summary = run_cv(cfg, manifest, folder, protocol="report", jobs=jobs, progress=progress, log=log,
                         launcher=launcher, ray_address=ray_address)
        folders.append(folder)
        done_epochs += cfg.train.epochs * n_jobs
        elapsed = time.perf_counter() - t0
        eta = elapsed / done_epochs * (total_epochs - done_epochs) if done_epochs else 0
        log(f"[study {i}/{len(cfgs)}] {cfg.name}: test acc {summary['test_acc_mean']:.3f} +- "
            f"{summary['test_acc_std']:.3f}, ensemble {summary['ensemble_test_acc']:.3f}; "
            f"{elapsed / 60:.1f} min so far, about {eta / 60:.1f} min left")
    return folders
