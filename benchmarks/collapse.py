"""Why did the report's transformer collapse to one class? Train the seed transformer both ways.

Each variant trains on ESC-10 folds 1-3, validates on fold 4 (the report protocol's job
``val4``; fold 5 is not looked at here) and reports per epoch: training loss, validation
accuracy, and how many validation clips fall in the single most-predicted class.

The full seed transformer (3 blocks of dim 2000 over 5 windows per clip) needs minutes per
step on a CPU, so by default every variant is shrunk the same way: 1 block instead of 3, one
random 1-s window per clip per epoch. Model dim 2000, the token layout, the optimiser and the
learning rate, which are what the variants compare, stay as in the report.

    python benchmarks/collapse.py --data ../shared/datasets/esc10 [--epochs 4] [--full]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from soundformer.config import load_config
from soundformer.cv import make_split, plan_jobs
from soundformer.data.sources import load_manifest
from soundformer.train import run_job

VARIANTS = {
    "report (post-norm, Adam lr 1e-3, channel tokens)": [],
    "lower lr (Adam 1e-4)": ["train.lr=1e-4"],
    "pre-norm + warm-up + AdamW 1e-3": ["model.norm_first=true", "train.warmup_epochs=1", "train.optimizer=adamw",
                                        "train.weight_decay=0.05", "train.schedule=cosine"],
}
OPTIONAL = {
    "time tokens (2000 x 128 -> dim 128), pre-norm": ["model.token_layout=time", "model.dim=128", "model.mlp_dim=256",
                                                      "model.norm_first=true", "train.warmup_epochs=1"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--full", action="store_true", help="3 blocks and all 5 windows per clip (GPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", help="folder for the runs (default: a temporary folder)")
    ap.add_argument("--all", action="store_true", help="also the time-token variant (2000 tokens: slow on CPU)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--only", action="append", default=[], metavar="TEXT",
                    help="run only the variants whose name contains TEXT (repeatable), e.g. --only report --only time")
    args = ap.parse_args()
    manifest = load_manifest(args.data)
    shrink = [] if args.full else ["model.depth=1", "train.windows_per_clip=1", "augment.random_crop=true"]
    out = Path(args.out or tempfile.mkdtemp())
    results = {}
    variants = {**VARIANTS, **(OPTIONAL if args.all or args.only else {})}
    if args.only:
        variants = {k: v for k, v in variants.items() if any(t in k for t in args.only)}
        if not variants:
            raise SystemExit(f"error: --only {args.only} matches none of: {', '.join([*VARIANTS, *OPTIONAL])}")
    print(f"# seed-transformer-h1 variants, {args.epochs} epochs, {'full size' if args.full else 'shrunk (1 block, 1 window/clip)'}")
    for i, (name, overrides) in enumerate(variants.items()):
        cfg = load_config("seed-transformer-h1", shrink + overrides + [f"train.epochs={args.epochs}",
                                                                      f"train.device={args.device}",
                                                                      f"train.threads={args.threads}"])
        job = [j for j in plan_jobs(manifest, "report") if j.val_folds == [4]][0]
        split = make_split(manifest, job, cfg)
        split.test = []  # this diagnostic never reads the test fold
        t0 = time.perf_counter()
        run_job(cfg, manifest, split, out / f"v{i}", progress=False, log=lambda _: None)
        rows = [line.split(",") for line in (out / f"v{i}" / "metrics.csv").read_text().splitlines()]
        head = rows[0]
        hist = [dict(zip(head, r)) for r in rows[1:]]
        preds = np.load(out / f"v{i}" / "predictions.npz")
        val_pred = preds["val_probs"].argmax(1)
        share = np.bincount(val_pred).max() / len(val_pred)
        results[name] = {
            "train_loss": [round(float(h["train_loss"]), 3) for h in hist],
            "val_acc": [round(float(h["val_acc"]), 3) for h in hist],
            "final_val_acc": float((val_pred == preds["val_labels"]).mean()),
            "largest_class_share": float(share), "classes_predicted": int(len(set(val_pred.tolist()))),
            "seconds": time.perf_counter() - t0,
        }
        r = results[name]
        print(f"{name}: train loss {r['train_loss']}, val acc {r['val_acc']}, "
              f"val clips in the most-predicted class {100 * share:.0f} %, "
              f"{r['classes_predicted']} classes predicted ({r['seconds']:.0f} s)", flush=True)
    (out / "collapse.json").write_text(json.dumps(results, indent=2))
    print(f"details: {out / 'collapse.json'}")


if __name__ == "__main__":
    main()
