"""Which test clips do cross-validation runs get wrong, and do they agree? Prints, from the
``predictions.npz`` of standard-protocol folders:

- each folder's per-fold and mean test accuracy;
- the accuracy of averaging all folders' predictions fold by fold (an ensemble of the runs);
- every clip wrong in at least ``--min-runs`` folders, with the label most often predicted,
  and the source recordings those clips come from (ESC file names: FOLD-SOURCE-TAKE.ext).

    python benchmarks/hard_clips.py runs/lt_std_s0 runs/lt_std_s1 runs/lmc_std_s0 --min-runs 2

Errors that every run shares are a property of the data and the features, not of one seed:
another seed, or an ensemble of seeds, cannot fix them.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from cv_runs import job_names


def clip_key(path) -> str:
    """A path cut to its last two parts (class folder / file name)."""
    return "/".join(Path(str(path)).parts[-2:])


def fold_predictions(folder: Path) -> dict[str, dict]:
    """job -> {paths, labels, probs, classes}, clips sorted by path so folders line up.

    Paths are cut to their last two parts (class folder / file name), so runs made from copies
    of the data set in different places (another machine) line up too."""
    out = {}
    for job in job_names(folder):
        d = np.load(folder / job / "predictions.npz")
        paths = np.array([clip_key(p) for p in d["test_paths"]])
        order = np.argsort(paths)
        out[job] = {"paths": paths[order], "labels": d["test_labels"][order],
                    "probs": d["test_probs"][order], "classes": [str(c) for c in d["classes"]]}
    return out


def source(path: str) -> str:
    stem = Path(path).stem
    parts = stem.split("-")
    return "-".join(parts[:2]) if len(parts) >= 3 else stem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="standard-protocol cv folders")
    ap.add_argument("--min-runs", type=int, default=0, help="list clips wrong in at least this many folders "
                    "(default: all of them)")
    args = ap.parse_args(argv)
    runs = {str(f): fold_predictions(f) for f in args.folders}
    first = runs[str(args.folders[0])]
    jobs = list(first)
    for name, preds in runs.items():
        if list(preds) != jobs or any(not np.array_equal(preds[j]["paths"], first[j]["paths"]) for j in jobs):
            raise SystemExit(f"{name}: its folds or test clips differ from {args.folders[0]}'s")
    print("| run | test acc per fold (%) | mean ± std | errors |")
    print("|---|---|---|---|")
    wrong: dict[str, list[str]] = defaultdict(list)
    truth: dict[str, str] = {}
    for name, preds in runs.items():
        accs, errors = [], 0
        for job in jobs:
            p = preds[job]
            guess = p["probs"].argmax(1)
            accs.append((guess == p["labels"]).mean())
            for path, y, g in zip(p["paths"], p["labels"], guess):
                truth[path] = p["classes"][y]
                if y != g:
                    wrong[path].append(p["classes"][g])
                    errors += 1
        a = 100 * np.array(accs)
        print(f"| {name} | {' / '.join(f'{x:.1f}' for x in a)} | {a.mean():.1f} ± {a.std():.1f} % | {errors} |")
    if len(runs) > 1:
        accs, errors = [], 0
        for job in jobs:
            labels = first[job]["labels"]
            mean = np.mean([r[job]["probs"] for r in runs.values()], 0)  # (clips, classes)
            accs.append((mean.argmax(1) == labels).mean())
            errors += int((mean.argmax(1) != labels).sum())
        a = 100 * np.array(accs)
        print(f"| ensemble of the {len(runs)} runs | {' / '.join(f'{x:.1f}' for x in a)} | "
              f"{a.mean():.1f} ± {a.std():.1f} % | {errors} |")
    need = args.min_runs or len(runs)
    hard = sorted(((p, g) for p, g in wrong.items() if len(g) >= need), key=lambda kv: (-len(kv[1]), kv[0]))
    n_clips = sum(len(first[j]["labels"]) for j in jobs)
    print(f"\n{len(wrong)} of {n_clips} clips are wrong in at least one run; {len(hard)} in at least {need} "
          f"of {len(runs)}:\n")
    print("| clip | true class | wrong in | predicted |")
    print("|---|---|---|---|")
    for path, guesses in hard:
        common = ", ".join(f"{c} ({k})" for c, k in Counter(guesses).most_common(2))
        print(f"| {Path(path).name} | {truth[path]} | {len(guesses)} of {len(runs)} | {common} |")
    by_source = Counter(source(p) for p, _ in hard)
    shared = [(s, k) for s, k in by_source.most_common() if k > 1]
    if shared:
        print("\nsource recordings with several of those clips: "
              + ", ".join(f"{s} ({k} clips)" for s, k in shared))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
