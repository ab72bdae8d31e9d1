"""Each member of an ensemble on its own: re-evaluate every fold model of one or more cv folders
on its test clips, member by member, and say how often the members disagree, how often at least
one of them is right, and what their average scores.

    python benchmarks/members.py runs/v23_ens_s2 runs/v24_dml_s2
    python benchmarks/members.py --folds 1,2,3 --per-fold runs/v81_bce_pgain08_s12   # a stopped run

Prints one row per cv folder, each figure a mean over its folds: each member's accuracy, the
ensemble's (the mean of the members' probabilities, as the model predicts), the share of test
clips whose members give different classes, and the share that at least one member gets right
(the most any way of combining them could reach). `--folds` scores only those folds' jobs (testK/
under the standard protocol, valK/ under the report protocol, read directly, so a run stopped
before its last fold works too); `--per-fold` adds a table of each fold's errors, member by member.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from cv_runs import checkpoint_paths

from soundformer import load_model
from soundformer.data import audio
from soundformer.evaluate import predict_clips


def member_probs(job_dir: Path, checkpoint: Path) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Member names, each member's (n_clips, n_classes) test probabilities, and the labels."""
    clf = load_model(checkpoint)
    preds = np.load(job_dir / "predictions.npz")
    clips = [audio.load(p, clf.sample_rate) for p in preds["test_paths"]]
    names = list(clf.cfg.model.ensemble) or [clf.cfg.features.compression]
    probs = [predict_clips(m, clips, window=clf.window, hop=clf.hop, short_policy=clf.cfg.audio.short_policy)
             for m in clf.model.members()]
    return names, probs, preds["test_labels"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cv_folders", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--folds", default="", help="comma-separated folds to score (e.g. 1,2,3,4), read from testK/ "
                    "(or valK/ under --protocol report) directly, so a stopped run works too; default: every "
                    "fold of a finished run")
    ap.add_argument("--per-fold", action="store_true", help="also print each fold's errors per member")
    args = ap.parse_args()
    try:
        folds = [int(k) for k in args.folds.split(",")] if args.folds else None
    except ValueError:
        ap.error(f"--folds takes comma-separated fold numbers (e.g. 1,2,3,4), got {args.folds!r}")
    torch.set_num_threads(args.threads)
    rows, fold_rows = [], []
    for folder in map(Path, args.cv_folders):
        jobs = []  # one per fold: (job, right: (members + 1, n_clips) with the ensemble last, disagree, oracle)
        for job, checkpoint in checkpoint_paths(folder, folds).items():
            names, probs, labels = member_probs(folder / job, checkpoint)
            choices = np.stack([p.argmax(1) for p in probs] + [np.mean(probs, 0).argmax(1)])  # (members + 1, n_clips)
            right = choices == labels
            jobs.append((job, right, (choices[:-1] != choices[0]).any(0).mean(), right[:-1].any(0).mean()))
        accuracy = np.mean([right.mean(1) for _, right, _, _ in jobs], 0)  # (members + 1,), the ensemble last
        rows.append((folder.name, names, accuracy, np.mean([j[2] for j in jobs]), np.mean([j[3] for j in jobs])))
        fold_rows += [(folder.name, job, (~right).sum(1), right.shape[1]) for job, right, _, _ in jobs]
    names = rows[0][1]
    print("| run | " + " | ".join(f"{m} member" for m in names) + " | ensemble | members disagree | one or more right |")
    print("|---|" + "---|" * (len(names) + 3))
    for run, _, accuracy, dis, orc in rows:
        cells = [f"{100 * a:.2f} %" for a in accuracy]  # each member's, then the ensemble's
        print(f"| {run} | " + " | ".join(cells) + f" | {100 * dis:.2f} % | {100 * orc:.2f} % |")
    if args.per_fold:
        print()
        print("| run | fold | " + " | ".join(f"{m} member errors" for m in names) + " | ensemble errors | clips |")
        print("|---|---|" + "---|" * (len(names) + 2))
        for run, job, errors, n in fold_rows:  # errors: each member's, then the ensemble's
            print(f"| {run} | {job} | " + " | ".join(map(str, errors)) + f" | {n} |")


if __name__ == "__main__":
    main()
