"""Markdown rows for docs/RESULTS.md from cross-validation folders (reads cv_summary.json and
each job's summary.json; prints what was measured, nothing else).

    python benchmarks/results_table.py runs/lt_std_s0 runs/lt_std_s1 ...
    python benchmarks/results_table.py --ablation runs/lt_std_s0 runs/abl_nomixup ...

``--ablation BASE``: one row per folder with its difference from BASE, and the settings that
differ from BASE's, read from the saved ``config.yaml`` files (threads and data path ignored).

``--seeds``: folders named VARIANT_sSEED (as benchmarks/gpu_sweep.sh makes them) are grouped by
variant; one row per variant with its 5-fold mean for each seed, the mean over seeds and its
difference from the first variant's (the base).

    python benchmarks/results_table.py --seeds runs/sw/base_s0 runs/sw/base_s1 runs/sw/ls01_s0 ...
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import yaml
from cv_runs import cv_summary, job_names

from soundformer.config import from_dict


def row(folder: Path) -> str:
    cv = cv_summary(folder)
    jobs = {name: json.loads((folder / name / "summary.json").read_text()) for name in cv["jobs_planned"]}
    first = next(iter(jobs.values()))
    seed = yaml.safe_load((folder / cv["jobs_planned"][0] / "config.yaml").read_text())["train"]["seed"]
    per = " / ".join(f"{100 * j['test_acc']:.1f}" for j in jobs.values())
    acc = np.array([j["test_acc"] for j in jobs.values()])
    ens = f"{100 * cv['ensemble_test_acc']:.1f} %" if "ensemble_test_acc" in cv else "–"
    val_mean = cv.get("val_acc_mean")
    val = "–" if val_mean is None or val_mean != val_mean else f"{100 * val_mean:.1f} %"  # NaN: no validation data
    train_min = sum(j["train_time_s"] for j in jobs.values()) / 60
    return (f"| {cv['preset']} | {cv['protocol']} | {seed} | {per} | {100 * acc.mean():.1f} ± {100 * acc.std():.1f} % "
            f"| {ens} | {val} | {first['params_trainable']:,} | {train_min:.1f} min "
            f"| {cv.get('wall_time_s_this_call', float('nan')) / 60:.1f} min |")


def settings(folder: Path) -> dict:
    first = job_names(folder)[0]
    # through the current Config, so keys added since the run was made read as their defaults
    cfg = from_dict(yaml.safe_load((folder / first / "config.yaml").read_text())).to_dict()
    flat = {f"{section}.{k}": v for section, values in cfg.items() if isinstance(values, dict) for k, v in values.items()}
    return {k: v for k, v in flat.items() if k not in ("train.threads", "data.path")}


def fold_accuracies(folder: Path) -> np.ndarray:
    return np.array([json.loads((folder / n / "summary.json").read_text())["test_acc"] for n in job_names(folder)])


def changed_settings(ref: dict, mine: dict) -> str:
    """`key=value` for every setting where ``mine`` differs from ``ref``."""
    return ", ".join(f"`{k}={mine.get(k)}`" for k in sorted(set(ref) | set(mine)) if ref.get(k) != mine.get(k))


def ablation(base: Path, folders: list[Path]) -> None:
    ref, ref_acc = settings(base), fold_accuracies(base).mean()
    print(f"| run | settings changed from {base.name} | test acc per fold (%) | mean ± std | difference |")
    print("|---|---|---|---|---|")
    for folder in [base, *folders]:
        acc, changed = fold_accuracies(folder), changed_settings(ref, settings(folder))
        per = " / ".join(f"{100 * a:.1f}" for a in acc)
        diff = "–" if folder == base else f"{round(100 * (acc.mean() - ref_acc), 1) + 0.0:+.1f} pts"  # no "-0.0"
        print(f"| {folder.name} | {changed or '(the recipe)'} | {per} | {100 * acc.mean():.1f} ± {100 * acc.std():.1f} % | {diff} |")


def by_seed(folders: list[Path]) -> None:
    groups: dict[str, list[Path]] = {}
    for folder in folders:
        groups.setdefault(re.sub(r"_s\d+$", "", folder.name), []).append(folder)
    config = {folder: settings(folder) for folder in folders}
    seed_of = {folder: config[folder].pop("train.seed") for folder in folders}
    ref = config[folders[0]]
    base_mean, base = None, next(iter(groups))
    print(f"| variant | settings changed from {base} | seeds "
          "| 5-fold mean per seed (%) | mean over seeds | difference |")
    print("|---|---|---|---|---|---|")
    for name, runs in groups.items():
        seeds = [seed_of[r] for r in runs]
        changed = changed_settings(ref, config[runs[0]])
        means = np.array([100 * fold_accuracies(r).mean() for r in runs])
        base_mean = means.mean() if base_mean is None else base_mean
        diff = "–" if name == base else f"{round(means.mean() - base_mean, 1) + 0.0:+.1f} pts"
        spread = f" ± {means.std():.1f}" if len(means) > 1 else ""
        print(f"| {name} | {changed or '(the recipe)'} | {', '.join(map(str, seeds))} "
              f"| {' / '.join(f'{m:.1f}' for m in means)} | {means.mean():.1f}{spread} % | {diff} |")


def check_finished(folders: list[Path]) -> None:
    """Exit with one line naming the first folder that is not a finished cv run (no traceback),
    before any row is printed."""
    for folder in folders:
        cv_summary(folder)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--ablation", metavar="BASE", type=Path,
                      help="one row per folder with its difference from BASE's 5-fold mean and the settings that differ")
    mode.add_argument("--seeds", action="store_true",
                      help="group folders named VARIANT_sSEED by variant: one row per variant, mean over seeds")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="finished `soundformer cv` run folders")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_finished(([args.ablation] if args.ablation else []) + args.runs)
    if args.seeds:
        by_seed(args.runs)
        return
    if args.ablation:
        ablation(args.ablation, args.runs)
        return
    print("| preset | protocol | seed | test acc per fold model (%) | mean ± std | ensemble (fold 5) | val acc (mean) "
          "| parameters | training time (sum of jobs) | wall time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        print(row(run))


if __name__ == "__main__":
    main()
