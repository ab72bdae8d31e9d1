"""Markdown rows for docs/RESULTS.md from cross-validation folders (reads cv_summary.json and
each job's summary.json; prints what was measured, nothing else).

    python benchmarks/results_table.py runs/lt_std_s0 runs/lt_std_s1 ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml


def row(folder: Path) -> str:
    cv = json.loads((folder / "cv_summary.json").read_text())
    jobs = {name: json.loads((folder / name / "summary.json").read_text()) for name in cv["jobs_planned"]}
    first = next(iter(jobs.values()))
    seed = yaml.safe_load((folder / cv["jobs_planned"][0] / "config.yaml").read_text())["train"]["seed"]
    per = " / ".join(f"{100 * j['test_acc']:.1f}" for j in jobs.values())
    acc = np.array([j["test_acc"] for j in jobs.values()])
    ens = f"{100 * cv['ensemble_test_acc']:.1f} %" if "ensemble_test_acc" in cv else "–"
    train_min = sum(j["train_time_s"] for j in jobs.values()) / 60
    return (f"| {cv['preset']} | {cv['protocol']} | {seed} | {per} | {100 * acc.mean():.1f} ± {100 * acc.std():.1f} % "
            f"| {ens} | {100 * cv['val_acc_mean']:.1f} % | {first['params_trainable']:,} | {train_min:.1f} min "
            f"| {cv.get('wall_time_s_this_call', float('nan')) / 60:.1f} min |")


def main() -> None:
    print("| preset | protocol | seed | test acc per fold model (%) | mean ± std | ensemble (fold 5) | val acc (mean) "
          "| parameters | training time (sum of jobs) | wall time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        print(row(Path(arg)))


if __name__ == "__main__":
    main()
