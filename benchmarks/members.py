"""Each member of an ensemble on its own: re-evaluate every fold model of one or more cv folders
on its test clips, member by member, and say how often the members disagree, how often at least
one of them is right, and what their average scores.

    python benchmarks/members.py runs/v23_ens_s2 runs/v24_dml_s2

Prints one row per cv folder, each figure a mean over its folds: each member's accuracy, the
ensemble's (the mean of the members' probabilities, as the model predicts), the share of test
clips whose members give different classes, and the share that at least one member gets right
(the most any way of combining them could reach).
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for folder in map(Path, args.cv_folders):
        member_accs, together, disagree, oracle = [], [], [], []
        for job, checkpoint in checkpoint_paths(folder).items():
            names, probs, labels = member_probs(folder / job, checkpoint)
            right = [p.argmax(1) == labels for p in probs]  # each (n_clips,)
            member_accs.append([r.mean() for r in right])
            together.append((np.mean(probs, 0).argmax(1) == labels).mean())
            choices = np.stack([p.argmax(1) for p in probs])  # (members, n_clips)
            disagree.append((choices != choices[0]).any(0).mean())
            oracle.append(np.any(right, 0).mean())
        rows.append((folder.name, names, np.mean(member_accs, 0), together, np.mean(disagree), np.mean(oracle)))
    names = rows[0][1]
    print("| run | " + " | ".join(f"{m} member" for m in names) + " | ensemble | members disagree | one or more right |")
    print("|---|" + "---|" * (len(names) + 3))
    for run, _, per_member, together, dis, orc in rows:
        cells = [f"{100 * a:.2f} %" for a in per_member]
        print(f"| {run} | " + " | ".join(cells) + f" | {100 * np.mean(together):.2f} % | {100 * dis:.2f} % | {100 * orc:.2f} % |")


if __name__ == "__main__":
    main()
