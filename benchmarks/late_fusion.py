"""Would a different kind of model add to the preset? Average its out-of-fold probabilities in.

Takes standard-protocol cv folders (each fold model's test probabilities, predictions.npz) and
the out-of-fold probabilities of another model for the same clips (another standard-protocol cv
folder, or an .npz with ``paths``, ``labels`` and ``probs_*`` arrays, as
``benchmarks/modulation_probe.py --save-probs`` writes), and prints per-fold accuracy for the
runs alone, the other model alone and the two averaged:

    fused = (1 - weight) * run + weight * other

``--weight`` is fixed before looking (default 1/3: the other model as a third member beside the
preset's two); it is never fitted on the test folds, which every figure here is measured on.

    python benchmarks/late_fusion.py runs/v18_ens_s0 --other runs/probe.npz --key probs_512_80
    python benchmarks/late_fusion.py runs/v19_one_s0 runs/v21_pcen_s0 --other runs/v20_mod_s0

Since an ensemble's members train apart (each its own loss), fusing a separately trained member
at weight 1/3 with a two-member run is what a three-member run would give, up to the seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from hard_clips import clip_key, fold_predictions

# clip_key cuts a path to class folder / file name, so copies of a data set in other places line up


def run_probabilities(folder: Path) -> dict[str, tuple[int, int, np.ndarray]]:
    """clip -> (test fold index, label, probabilities) over a cv folder's fold models."""
    out = {}
    for j, job in enumerate(fold_predictions(folder).values()):
        for p, y, pr in zip(job["paths"], job["labels"], job["probs"]):
            out[str(p)] = (j, int(y), pr)
    return out


def fold_accuracies(folds: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> list[float]:
    return [100 * float((probs[folds == f].argmax(1) == labels[folds == f]).mean()) for f in np.unique(folds)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="standard-protocol cv folders (averaged if several)")
    ap.add_argument("--other", required=True, type=Path,
                    help="a standard-protocol cv folder, or an .npz of out-of-fold probabilities")
    ap.add_argument("--key", default="", help="which probs_* array of --other (default: the only one)")
    ap.add_argument("--weight", type=float, default=1 / 3, help="share of the other model (default: 1/3)")
    args = ap.parse_args(argv)
    if not 0 <= args.weight <= 1:
        raise SystemExit(f"--weight must be in [0, 1], got {args.weight}")
    if args.other.is_dir():
        name = "cv run"
        other_probs = {c: pr for c, (_, _, pr) in run_probabilities(args.other).items()}
    else:
        other = np.load(args.other)
        choices = [k for k in other.files if k.startswith("probs")]
        name = args.key or (choices[0] if len(choices) == 1 else "")
        if name not in choices:
            raise SystemExit(f"--key: choose one of {', '.join(choices)} in {args.other}")
        other_probs = {clip_key(p): pr for p, pr in zip(other["paths"], other[name])}

    runs = [run_probabilities(f) for f in args.folders]
    clips = sorted(runs[0])
    missing = [c for c in clips if c not in other_probs or any(c not in r for r in runs)]
    if missing:
        raise SystemExit(f"{len(missing)} clips of {args.folders[0]} are missing elsewhere, e.g. {missing[0]}")
    folds = np.array([runs[0][c][0] for c in clips])
    labels = np.array([runs[0][c][1] for c in clips])
    run = np.mean([[r[c][2] for c in clips] for r in runs], axis=0)
    side = np.array([other_probs[c] for c in clips])
    fused = (1 - args.weight) * run + args.weight * side
    print("| predictions | test acc per fold (%) | mean ± std | errors |")
    print("|---|---|---|---|")
    for label, probs in ((f"{len(runs)} run(s) averaged", run), (f"{args.other.name} [{name}]", side),
                         (f"fused, weight {args.weight:.3g}", fused)):
        accs = fold_accuracies(folds, labels, probs)
        errors = int((probs.argmax(1) != labels).sum())
        print(f"| {label} | {' / '.join(f'{a:.1f}' for a in accs)} | {np.mean(accs):.2f} ± {np.std(accs):.1f} % "
              f"| {errors} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
