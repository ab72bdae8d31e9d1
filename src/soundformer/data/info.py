"""``soundformer data info``: what a data set holds, and every file that cannot be used."""

from __future__ import annotations

from collections import Counter

import numpy as np
import soundfile as sf

from .sources import Manifest


def describe(manifest: Manifest, durations_out: list[float] | None = None) -> dict:
    """Counts per class and fold, durations, sample rates, channels and bad files.

    ``durations_out``, if given, receives every usable clip's duration in seconds.
    """
    per_class, per_fold = manifest.counts()
    durations, rates, channels, bad = [], Counter(), Counter(), []
    from .audio import AudioError, decode

    for it in manifest.items:
        try:
            meta = sf.info(str(it.path))
        except Exception as exc:  # noqa: BLE001 - any libsndfile failure is a bad file here
            reason = str(exc).split(":", 1)[-1].strip() if it.path.exists() else "file not found"
            bad.append({"path": str(it.path), "reason": f"cannot decode: {reason}"})
            continue
        if meta.frames == 0:
            bad.append({"path": str(it.path), "reason": "has zero samples (empty or truncated file)"})
            continue
        try:  # a full decode finds truncated streams and NaN samples that the header hides
            decode(it.path, meta.samplerate)
        except AudioError as exc:
            bad.append({"path": str(it.path), "reason": str(exc).split(": ", 1)[-1]})
            continue
        durations.append(meta.frames / meta.samplerate)
        rates[meta.samplerate] += 1
        channels[meta.channels] += 1
    folds_of: dict[str, set] = {}
    for it in manifest.items:
        folds_of.setdefault(it.class_name, set()).add(it.fold)
    notes = list(manifest.notes)
    lonely = sorted(c for c, f in folds_of.items() if len(f) == 1 and len(manifest.folds) > 1)
    if lonely:
        notes.append(f"classes found in one fold only (unknown to a model tested on that fold): {', '.join(lonely)}")
    if durations_out is not None:
        durations_out.extend(durations)
    d = np.array(durations) if durations else np.zeros(1)
    return {
        "root": str(manifest.root),
        "format": manifest.format,
        "clips": len(manifest),
        "classes": len(manifest.classes),
        "per_class": {c: per_class[c] for c in manifest.classes},
        "per_fold": {int(f): per_fold[f] for f in sorted(per_fold)},
        "folds_given": manifest.folds_given,
        "duration_s": {"min": float(d.min()), "mean": float(d.mean()), "max": float(d.max()),
                       "total": float(d.sum())},
        "sample_rates": {int(k): v for k, v in sorted(rates.items())},
        "channels": {int(k): v for k, v in sorted(channels.items())},
        "bad_files": bad,
        "notes": notes,
    }


def format_info(info: dict) -> str:
    lines = [
        f"data set      {info['root']} ({info['format']} layout)",
        f"clips         {info['clips']}",
        f"classes       {info['classes']}",
    ]
    width = max(len(c) for c in info["per_class"])
    lines += [f"  {c:<{width}}  {n}" for c, n in info["per_class"].items()]
    made = "" if info["folds_given"] else " (made by a seeded stratified split)"
    lines.append(f"folds         {len(info['per_fold'])}{made}")
    lines += [f"  fold {f}  {n}" for f, n in info["per_fold"].items()]
    d = info["duration_s"]
    lines.append(f"duration      min {d['min']:.2f} s, mean {d['mean']:.2f} s, max {d['max']:.2f} s, "
                 f"total {d['total'] / 60:.1f} min")
    lines.append("sample rates  " + ", ".join(f"{r} Hz x {n}" for r, n in info["sample_rates"].items()))
    lines.append("channels      " + ", ".join(f"{c} ch x {n}" for c, n in info["channels"].items()))
    lines += [f"note          {n}" for n in info["notes"]]
    if info["bad_files"]:
        lines.append(f"bad files     {len(info['bad_files'])}")
        lines += [f"  {b['path']}: {b['reason']}" for b in info["bad_files"]]
    else:
        lines.append("bad files     none")
    return "\n".join(lines)
