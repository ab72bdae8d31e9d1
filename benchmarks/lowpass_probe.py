"""Does a model tell classes apart by their treble alone? Re-evaluate every fold model of one or
more cv folders on its own test clips, as recorded and low-passed at each ``--cutoffs`` frequency
(the filter of ``augment.lowpass_prob``: zero-phase, 40 dB down one octave above the cutoff), and
print, per class, the share of clips called right and the class the low-passed clips are called
most often.

    python benchmarks/lowpass_probe.py runs/v66_preset_s14 runs/v67_lp05_s10 --cutoffs 2000

A model that has learnt "little treble = helicopter" calls low-passed rain and sea waves
helicopter; a model trained with ``augment.lowpass_prob`` should not.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from cv_runs import checkpoint_paths

from soundformer import load_model
from soundformer.data import audio
from soundformer.evaluate import predict_clips
from soundformer.features import random_lowpass


def lowpassed(clip: np.ndarray, sample_rate: int, cutoff: float) -> np.ndarray:
    wav = torch.from_numpy(clip)[None]  # (1, N)
    return random_lowpass(wav, prob=1.0, sample_rate=sample_rate, min_hz=cutoff, max_hz=cutoff, atten_db=40.0)[0].numpy()


def probe(folder: Path, cutoffs: list[float]) -> dict[str, dict[str, list]]:
    """class -> {condition -> [predicted class of each test clip of that class]} over every fold."""
    out: dict[str, dict[str, list]] = {}
    for job, checkpoint in checkpoint_paths(folder).items():
        clf = load_model(checkpoint)
        preds = np.load(folder / job / "predictions.npz")
        clips = [audio.load(p, clf.sample_rate) for p in preds["test_paths"]]
        conditions = {"as recorded": clips}
        for cutoff in cutoffs:
            conditions[f"low-passed at {cutoff:g} Hz"] = [lowpassed(c, clf.sample_rate, cutoff) for c in clips]
        for name, batch in conditions.items():
            probs = predict_clips(clf.model, batch, window=clf.window, hop=clf.hop, short_policy=clf.cfg.audio.short_policy)
            for label, guess in zip(preds["test_labels"], probs.argmax(1)):
                out.setdefault(clf.classes[label], {}).setdefault(name, []).append(clf.classes[guess])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cv_folders", nargs="+")
    ap.add_argument("--cutoffs", default="2000", help="comma-separated low-pass cutoffs in Hz (default: 2000)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cutoffs = [float(c) for c in args.cutoffs.split(",") if c]
    for folder in map(Path, args.cv_folders):
        table = probe(folder, cutoffs)
        conditions = list(next(iter(table.values())))
        print(f"\n{folder.name}: share of each class's test clips called right (most frequent call when low-passed)\n")
        print("| class | " + " | ".join(conditions) + " |")
        print("|---|" + "---|" * len(conditions))
        totals = Counter()
        for cls in sorted(table):
            cells = []
            for cond in conditions:
                calls = table[cls][cond]
                right = sum(c == cls for c in calls)
                totals[cond] += right
                top, count = Counter(calls).most_common(1)[0]
                cells.append(f"{100 * right / len(calls):.0f} %" + (f" ({top}: {count})" if cond != "as recorded" and top != cls else ""))
            print(f"| {cls} | " + " | ".join(cells) + " |")
        n = sum(len(table[cls][conditions[0]]) for cls in table)
        print("| all | " + " | ".join(f"{100 * totals[c] / n:.2f} %" for c in conditions) + " |")


if __name__ == "__main__":
    main()
