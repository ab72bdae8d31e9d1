"""How often does a random training crop miss the sound? Prints, for a data set, the share of
uniformly placed crops (``--fraction`` of the window, the preset's 0.6 = 3 s of 5) that hold less
than each of a few shares of the energy of their clip's loudest crop of the same length, overall
and per class, and how many starts ``augment.crop_min_energy`` would keep.

Many ESC clips are one short event padded with silence: a 3-s crop of a clip whose bark fills its
first second misses it about half the time, and then trains the model on silence labelled "dog".

    python benchmarks/crop_energy.py .esc10 [--fraction 0.6] [--min-energy 0.5]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from soundformer.config import load_config
from soundformer.data.audio import fit_length, load_many
from soundformer.data.dataset import crop_energy_shares
from soundformer.data.sources import load_manifest
from soundformer.evaluate import crop_length
from soundformer.train import window_samples

SHARES = (0.01, 0.1, 0.25, 0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="data set folder or CSV manifest")
    ap.add_argument("--preset", default="logmel-transformer", help="for the sample rate and window")
    ap.add_argument("--fraction", type=float, default=None, help="crop share of the window (default: the preset's)")
    ap.add_argument("--min-energy", type=float, default=0.5, help="the crop_min_energy value to count starts for")
    ap.add_argument("--hop", type=int, default=160, help="start grid (samples)")
    args = ap.parse_args(argv)
    if args.fraction is not None and not 0 < args.fraction <= 1:
        ap.error(f"--fraction is a share of the window in (0, 1], got {args.fraction:g}")
    if not 0 <= args.min_energy < 1:
        ap.error(f"--min-energy is a share of the loudest crop's energy in [0, 1), got {args.min_energy:g}")
    if args.hop < 1:
        ap.error("--hop must be at least 1 sample")

    cfg = load_config(args.preset, [])
    window = window_samples(cfg)
    length = crop_length(window, args.fraction if args.fraction is not None else cfg.augment.crop_fraction)
    manifest = load_manifest(args.data)
    loaded = load_many([it.path for it in manifest.items], cfg.audio.sample_rate, progress=False)
    per_class: dict[str, list[np.ndarray]] = defaultdict(list)
    kept: dict[str, list[float]] = defaultdict(list)
    for item, audio in zip(manifest.items, loaded.audio):
        if audio is None:
            continue
        clip = fit_length(audio, window, cfg.audio.short_policy)
        _, shares = crop_energy_shares(clip, length, args.hop)
        per_class[item.class_name].append(shares)
        kept[item.class_name].append(float(np.mean(shares >= args.min_energy)))  # loud_starts' rule on these shares

    print(f"{manifest.root}: {sum(len(v) for v in per_class.values())} clips; crops of {length} samples "
          f"({length / window:g} of the {window}-sample window), starts every {args.hop} samples\n")
    header = " | ".join(f"< {s:g} of the loudest" for s in SHARES)
    print(f"| class | clips | {header} | starts kept at min_energy {args.min_energy:g} |")
    print("|---|---|" + "---|" * len(SHARES) + "---|")
    rows = sorted(per_class) + ["all"]
    for name in rows:
        groups = [s for v in per_class.values() for s in v] if name == "all" else per_class[name]
        ks = [k for v in kept.values() for k in v] if name == "all" else kept[name]
        cells = " | ".join(f"{100 * np.mean([np.mean(g < s) for g in groups]):.1f} %" for s in SHARES)
        print(f"| {name} | {len(groups)} | {cells} | {100 * np.mean(ks):.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
