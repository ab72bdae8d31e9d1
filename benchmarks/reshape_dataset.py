"""Make a labelled data set look unlike ESC-10, to test that the recipe is not tuned to it.

Reads any data set ``soundformer`` reads and writes a copy as a CSV source (``path,label,fold,
group``) whose clips have other sample rates and variable lengths:

- each clip is cut to its own random length in ``[--min-seconds, --max-seconds]``, keeping the
  loudest stretch of that length (as curated data sets trim clips around the event);
- the copies are written as FLAC at sample rates taken in turn from ``--rates``;
- folds and source-recording groups are kept, so no recording crosses a test fold.

    python benchmarks/reshape_dataset.py ../shared/datasets/esc10 /tmp/esc10_reshaped \
        --rates 22050,44100,48000 --min-seconds 1 --max-seconds 4
    soundformer cv --preset logmel-transformer --data /tmp/esc10_reshaped/manifest.csv ...
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from soundformer.data.audio import decode
from soundformer.data.sources import load_manifest


def loudest_stretch(wav: np.ndarray, length: int) -> np.ndarray:
    """The ``length`` samples of ``wav`` with the most energy (all of it if shorter)."""
    if len(wav) <= length:
        return wav
    energy = np.concatenate([[0.0], np.cumsum(wav.astype(np.float64) ** 2)])
    window_energy = energy[length:] - energy[:-length]  # (len - length + 1,)
    start = int(np.argmax(window_energy))
    return wav[start:start + length]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a data set soundformer reads (folder or CSV)")
    ap.add_argument("out", type=Path, help="new folder for the copy (must not exist)")
    ap.add_argument("--rates", default="22050,44100,48000", help="sample rates of the copies, used in turn")
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--max-seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; pass a new folder")
    if not 0 < args.min_seconds <= args.max_seconds:
        raise SystemExit("need 0 < --min-seconds <= --max-seconds")
    rates = [int(r) for r in args.rates.split(",")]
    manifest = load_manifest(args.data)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True)
    rows, lengths = [], []
    for n, item in enumerate(manifest.items):
        rate = rates[n % len(rates)]
        wav = decode(item.path, rate)
        clip = loudest_stretch(wav, int(rng.uniform(args.min_seconds, args.max_seconds) * rate))
        name = f"{Path(item.path).stem}.flac"
        folder = args.out / f"class{item.label:02d}"
        folder.mkdir(exist_ok=True)
        sf.write(folder / name, clip, rate, subtype="PCM_16")
        rows.append({"path": f"{folder.name}/{name}", "label": item.class_name, "fold": item.fold, "group": item.group})
        lengths.append(len(clip) / rate)
    with open(args.out / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "fold", "group"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} clips -> {args.out / 'manifest.csv'}; rates {rates}; "
          f"length {min(lengths):.2f}-{max(lengths):.2f} s, mean {np.mean(lengths):.2f} s")


if __name__ == "__main__":
    main()
