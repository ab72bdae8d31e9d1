"""Cross-validation protocols: plan (preset, fold) jobs, run them (idempotently), summarise.

- ``report``: the report's design. The last fold (5 on ESC) is held out for testing; the
  others take turns as the validation fold while the rest train. Each fold model is tested on
  the held-out fold, and so is the average of their predictions (the ensemble).
- ``standard``: leave-one-fold-out over all folds (the ESC papers' protocol); validation data
  for checkpoint choice is a group-aware slice of the training folds, never the test fold.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import PROTOCOLS, Config
from .data.sources import Manifest, split_validation
from .errors import Interrupted, SoundformerError
from .runtime import threads_per_job
from .train import DONE, Split, run_job


@dataclass
class Job:
    name: str  # folder name inside the preset's folder, e.g. "val1" or "test3"
    train_folds: list[int]
    val_folds: list[int]  # empty: validation is a slice of the training folds
    test_folds: list[int]


def plan_jobs(manifest: Manifest, protocol: str, test_fold: int | None = None) -> list[Job]:
    folds = manifest.folds
    if len(folds) < 2:
        raise SoundformerError(f"cross-validation needs at least 2 folds; the data has {folds}")
    if protocol == "report":
        held = test_fold if test_fold is not None else folds[-1]
        if held not in folds:
            raise SoundformerError(f"--test-fold {held} is not one of the data's folds {folds}")
        rest = [f for f in folds if f != held]
        if len(rest) < 2:
            raise SoundformerError("the report protocol needs at least 3 folds (2 to rotate, 1 to test)")
        return [Job(f"val{v}", [f for f in rest if f != v], [v], [held]) for v in rest]
    if protocol == "standard":
        return [Job(f"test{k}", [f for f in folds if f != k], [], [k]) for k in folds]
    raise SoundformerError(f"unknown protocol '{protocol}'; choose one of: {', '.join(PROTOCOLS)}")


def make_split(manifest: Manifest, job: Job, cfg: Config) -> Split:
    train = manifest.select(job.train_folds)
    if job.val_folds:
        val = manifest.select(job.val_folds)
    elif cfg.train.val_fraction > 0:
        train, val = split_validation(train, cfg.train.val_fraction, seed=cfg.train.seed)
    else:  # every training clip trains; nothing may then be chosen by validation
        if cfg.train.select == "best" or cfg.train.early_stopping:
            raise SoundformerError(
                "train.val_fraction=0 leaves no validation data, but train.select=best / train.early_stopping "
                "need it; set train.select=last and train.early_stopping=0, or a val_fraction such as 0.1"
            )
        val = []
    test = manifest.select(job.test_folds)
    val_name = job.val_folds or ([f"{cfg.train.val_fraction:.0%} of train"] if val else [])
    names = {"train": job.train_folds, "val": val_name, "test": job.test_folds}
    return Split(train, val, test, names)


def _run_one(args) -> tuple[str, dict | None, str | None]:
    cfg, manifest, job, run_dir, progress, jobs = args
    from .errors import SoundformerError as _E

    try:
        split = make_split(manifest, job, cfg)
        resume = (run_dir / "checkpoints" / "last.pt").exists()
        summary = run_job(cfg, manifest, split, run_dir, resume=resume, overwrite=not resume,
                          progress=progress, jobs=jobs, log=lambda m: print(m, flush=True))
        return job.name, summary, None
    except Interrupted:  # Ctrl-C stops the cross-validation, not just this fold
        raise Interrupted(
            f"interrupted in {run_dir}; its latest checkpoint is saved. Run the same command again to "
            f"continue: finished folds are skipped and this one resumes"
        ) from None
    except _E as exc:
        return job.name, None, str(exc)


def run_cv(
    cfg: Config, manifest: Manifest, out_dir: Path, *, protocol: str, jobs: int = 1,
    test_fold: int | None = None, progress: bool = True, log: Callable[[str], None] = print,
    launcher: str = "local", ray_address: str | None = None,
) -> dict:
    """Run every job of ``protocol`` under ``out_dir`` (skipping finished ones) and summarise.

    ``launcher="local"`` runs jobs here (``jobs`` processes at a time); ``"ray"`` sends the same
    jobs to a Ray cluster (``ray_address``, or a local Ray instance) with retries.
    """
    out_dir = Path(out_dir)
    plan = plan_jobs(manifest, protocol, test_fold)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [j for j in plan if not (out_dir / j.name / DONE).exists()]
    if len(todo) < len(plan):
        log(f"{cfg.name}: {len(plan) - len(todo)} of {len(plan)} jobs already done, skipping them")
    if launcher == "local" and cfg.train.threads <= 0:  # decided once, before our own jobs add to the load
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads_per_job(jobs)))
    t0 = time.perf_counter()
    errors = []
    args = [(cfg, manifest, j, out_dir / j.name, progress and jobs == 1 and launcher == "local", jobs) for j in todo]
    if launcher == "ray" and todo:
        from .launchers import run_on_ray

        for name, _, err in run_on_ray(_run_one, args, cfg, address=ray_address, log=log):
            log(f"{cfg.name}/{name}: {'failed: ' + err if err else 'done'}")
            if err:
                errors.append(f"{name}: {err}")
    elif jobs > 1 and len(todo) > 1:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for name, _, err in pool.map(_run_one, args):
                log(f"{cfg.name}/{name}: {'failed: ' + err if err else 'done'}")
                if err:
                    errors.append(f"{name}: {err}")
    else:
        for a in args:
            name, _, err = _run_one(a)
            if err:
                errors.append(f"{name}: {err}")
    if errors:
        raise SoundformerError(f"{len(errors)} job(s) failed:\n" + "\n".join(errors))
    summary = summarise(out_dir, plan, protocol)
    summary["wall_time_s_this_call"] = time.perf_counter() - t0
    summary["jobs"] = jobs
    (out_dir / "cv_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def summarise(out_dir: Path, plan: list[Job], protocol: str) -> dict:
    runs = {j.name: json.loads((out_dir / j.name / "summary.json").read_text()) for j in plan}
    test_acc = [runs[j.name]["test_acc"] for j in plan]
    out = {
        "protocol": protocol,
        "preset": next(iter(runs.values()))["preset"],
        "jobs_planned": [j.name for j in plan],
        "per_job": {name: {k: r.get(k) for k in ("train_acc", "val_acc", "test_acc", "best_epoch", "train_time_s")}
                    for name, r in runs.items()},
        "test_acc_mean": float(np.mean(test_acc)),
        "test_acc_std": float(np.std(test_acc)),
        "val_acc_mean": float(np.mean([r.get("val_acc", np.nan) for r in runs.values()])),
        "train_acc_mean": float(np.mean([r["train_acc"] for r in runs.values()])),
        "train_time_s_total": float(sum(r["train_time_s"] for r in runs.values())),
    }
    if protocol == "report":
        preds = [np.load(out_dir / j.name / "predictions.npz") for j in plan]
        labels = preds[0]["test_labels"]
        for p in preds[1:]:
            if not np.array_equal(p["test_labels"], labels):
                raise SoundformerError("fold models were tested on different clips; cannot ensemble")
        probs = np.mean([p["test_probs"] for p in preds], axis=0)
        out["ensemble_test_acc"] = float((probs.argmax(1) == labels).mean())
        np.savez(out_dir / "ensemble_predictions.npz", test_probs=probs, test_labels=labels,
                 test_paths=preds[0]["test_paths"], classes=preds[0]["classes"])
    return out
