"""Test-time averaging ablation: re-evaluate each fold model of a cv folder on its test clips
with evaluation windows every HOP of the window (1.0 = no overlap, the default; 0.5 = half
overlap, so clips longer than one window get more windows), with a single window per clip, and
with the first window averaged over K evenly spaced circular shifts of itself (the test-time
counterpart of the ``augment.time_shift`` training augmentation), and with the first window
averaged 50/50 with the mean of N shorter crops of it at evenly spaced offsets (crops of the
model's ``augment.crop_fraction`` of the window; the test-time counterpart of crop training), and
every window (at the model's own hop) treated that way, which is what ``train.eval_crops=N`` does
in cv and predict. ``--position-scales 0.6,0`` adds a probe of token order: whole windows with
token i of each transformer encoded at sinusoidal position i * S (0.6 squeezes a 5-s window's
tokens into the positions 3-s training crops saw; 0 removes order altogether).

    python benchmarks/tta.py runs/lt_std_s0 [--hops 1.0,0.5,0.25] [--rolls 4,8] [--crops 5] [--position-scales 0.6,0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from cv_runs import checkpoint_paths

from soundformer import load_model
from soundformer.data import audio
from soundformer.evaluate import accuracy, predict_clips
from soundformer.models.transformer import CLSEncoder


def set_position_scale(model: torch.nn.Module, scale: float) -> None:
    """Encode token i of every transformer encoder in ``model`` at position i * scale."""
    encoders = [m for m in model.modules() if isinstance(m, CLSEncoder)]
    if not encoders or any(e.positions != "sinusoidal" for e in encoders):
        raise SystemExit("--position-scales needs transformer models with sinusoidal positions")
    for e in encoders:
        e.position_scale = scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cv_folder")
    ap.add_argument("--hops", default="1.0,0.5,0.25")
    ap.add_argument("--rolls", default="4", help="numbers of circular shifts to average (empty: none)")
    ap.add_argument("--crops", default="", help="numbers of crops to average with the whole window (empty: none)")
    ap.add_argument("--position-scales", default="",
                    help="whole windows with token i at position i*S, for each S (empty: none)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(args.cv_folder)
    checkpoints = checkpoint_paths(folder)
    hops = [float(h) for h in args.hops.split(",")]
    table = {f"hop {h:g}": [] for h in hops}
    table["first window only"] = []
    rolls = [int(k) for k in args.rolls.split(",") if k]
    for k in rolls:
        table[f"first window, mean of {k} circular shifts"] = []
    crops = [int(n) for n in args.crops.split(",") if n]
    for n in crops:
        table[f"first window 50/50 with the mean of {n} crops"] = []
        table[f"every window 50/50 with the mean of {n} crops (train.eval_crops={n})"] = []
    scales = [float(x) for x in args.position_scales.split(",") if x]
    for sc in scales:
        table[f"whole windows, token positions x{sc:g}"] = []
    tests = []  # (test paths, labels) per job
    for job, checkpoint in checkpoints.items():
        clf = load_model(checkpoint)
        if scales:  # a model without sinusoidal positions stops here, before any clip is scored
            set_position_scale(clf.model, 1.0)
        preds = np.load(folder / job / "predictions.npz")
        clips = [audio.load(p, clf.sample_rate) for p in preds["test_paths"]]
        labels = preds["test_labels"]
        for h in hops:
            probs = predict_clips(clf.model, clips, window=clf.window, hop=max(1, int(clf.window * h)),
                                  short_policy=clf.cfg.audio.short_policy)
            table[f"hop {h:g}"].append(probs)
        firsts = [audio.fit_length(c, clf.window, clf.cfg.audio.short_policy)[: clf.window] for c in clips]
        probs = predict_clips(clf.model, firsts, window=clf.window, hop=clf.window)
        table["first window only"].append(probs)
        for k in rolls:
            shifted = [np.roll(c, i * clf.window // k) for c in firsts for i in range(k)]  # clip-major
            p = predict_clips(clf.model, shifted, window=clf.window, hop=clf.window)
            probs = p.reshape(len(firsts), k, -1).mean(1)
            table[f"first window, mean of {k} circular shifts"].append(probs)
        for n in crops:  # the library's evaluation crops (train.eval_crops), on the first window and on every window
            table[f"first window 50/50 with the mean of {n} crops"].append(predict_clips(
                clf.model, firsts, window=clf.window, hop=clf.window, crops=n, crop_length=clf.crop_samples))
            table[f"every window 50/50 with the mean of {n} crops (train.eval_crops={n})"].append(predict_clips(
                clf.model, clips, window=clf.window, hop=clf.hop, short_policy=clf.cfg.audio.short_policy,
                crops=n, crop_length=clf.crop_samples))
        for sc in scales:
            set_position_scale(clf.model, sc)
            table[f"whole windows, token positions x{sc:g}"].append(predict_clips(
                clf.model, clips, window=clf.window, hop=clf.window, short_policy=clf.cfg.audio.short_policy))
            set_position_scale(clf.model, 1.0)
        tests.append((list(preds["test_paths"]), labels))
    # report protocol: every fold model tested on the same held-out fold -> also their averaged predictions
    shared = all(paths == tests[0][0] for paths, _ in tests)
    print(f"| evaluation ({folder.name}) | " + " | ".join(checkpoints) + " | mean |" + (" ensemble |" if shared else ""))
    print("|---|" + "---|" * (len(checkpoints) + 1 + shared))
    for name, runs in table.items():
        accs = [accuracy(labels, probs) for (_, labels), probs in zip(tests, runs)]
        row = f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in accs) + f" | {100 * np.mean(accs):.2f} |"
        if shared:
            row += f" {100 * accuracy(tests[0][1], np.mean(runs, axis=0)):.2f} |"
        print(row)


if __name__ == "__main__":
    main()
