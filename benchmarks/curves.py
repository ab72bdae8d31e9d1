"""Learning curves of training runs, finished or not, as one Markdown table.

Reads every ``metrics.csv`` under the given run folders (one row per epoch, written as training
goes, so a run stopped early still shows how far it got) and prints, per job: epochs done,
validation accuracy at a few epochs, the best and the last, and the last training loss
(ln(classes) = 2.30 for 10 classes is the loss of a uniform guess).

    python benchmarks/curves.py runs/gpu1/gpu_runs/seed_h1 runs/gpu1/gpu_runs/collapse_full [--at 1,10,25,50]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def job_rows(run: Path) -> list[tuple[str, list[dict]]]:
    files = sorted(run.rglob("metrics.csv"))
    return [(str(f.parent.relative_to(run.parent)), list(csv.DictReader(f.read_text().splitlines())))
            for f in files]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--at", default="1,10,25,50", help="epochs whose validation accuracy is shown")
    args = ap.parse_args()
    at = [int(e) for e in args.at.split(",") if e]
    print("| job | epochs done | " + " | ".join(f"val acc @ {e}" for e in at)
          + " | best val acc (epoch) | last val acc | last train loss | s/epoch (last) |")
    print("|---" * (len(at) + 6) + "|")
    found = 0
    for run in args.runs:
        for job, rows in job_rows(run):
            rows = [r for r in rows if r.get("val_acc") not in (None, "")]
            if not rows:
                continue
            found += 1
            val = [float(r["val_acc"]) for r in rows]
            best = max(range(len(val)), key=val.__getitem__)
            cells = [f"{100 * val[e - 1]:.1f} %" if e <= len(val) else "–" for e in at]
            print(f"| {job} | {len(rows)} | " + " | ".join(cells)
                  + f" | {100 * val[best]:.1f} % ({rows[best]['epoch']}) | {100 * val[-1]:.1f} % "
                  f"| {float(rows[-1]['train_loss']):.3f} | {float(rows[-1]['epoch_time_s']):.1f} |")
    if not found:
        raise SystemExit(f"error: no metrics.csv with validation accuracy under {', '.join(map(str, args.runs))}")


if __name__ == "__main__":
    main()
