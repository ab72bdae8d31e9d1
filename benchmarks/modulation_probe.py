"""How much class information is in the amplitude modulation of each mel band, by frame hop?

A probe, not a model: for every clip it takes the log-mel envelope of ``--bands`` mel bands at a
given STFT window and hop, measures the power spectrum of each band's envelope over time (its
modulation spectrum: a helicopter's rotor shows as a peak at 10-40 Hz, rain as a flat one), pools
it into log-spaced modulation-frequency bins, and scores a logistic regression on those
features alone, leave-one-fold-out over the data set's folds. Coarse hops and long windows
smooth fast modulation away; if the probe scores much higher on a finer hop, the spectrogram
the models read throws class information away.

    python benchmarks/modulation_probe.py ../shared/datasets/esc10 --settings 1024/320,512/320,512/160,512/80

Prints one row per WINDOW/HOP setting (in samples at ``--sample-rate``): the mean and per-fold
accuracies. Reads any data set soundformer reads; clips are cut or looped to ``--seconds``.
"""

from __future__ import annotations

import argparse

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from soundformer.data.audio import fit_length, load
from soundformer.data.sources import load_manifest


def modulation_features(wav: np.ndarray, *, sample_rate: int, n_fft: int, hop: int, bands: int,
                        bins: int, lowest_hz: float = 0.5, with_spectrum: bool = False) -> np.ndarray:
    """(bands * (bins - 1),) log modulation power of each mel band's log envelope, in log-spaced
    modulation-frequency bins from ``lowest_hz`` to the frame rate's Nyquist frequency; with
    ``with_spectrum``, each band's mean and spread of log energy after them (2 * bands more)."""
    mel = librosa.feature.melspectrogram(y=wav, sr=sample_rate, n_fft=n_fft, hop_length=hop,
                                         n_mels=bands, power=2.0)
    log_mel = np.log(mel + 1e-8)  # (bands, frames)
    envelope = log_mel - log_mel.mean(1, keepdims=True)
    power = np.abs(np.fft.rfft(envelope * np.hanning(envelope.shape[1]), axis=1)) ** 2
    freqs = np.fft.rfftfreq(envelope.shape[1], d=hop / sample_rate)
    edges = np.geomspace(lowest_hz, sample_rate / hop / 2, bins)
    pooled = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (freqs >= lo) & (freqs < hi)
        if not inside.any():  # a bin narrower than a short clip's frequency step: its nearest line
            inside = [int(np.argmin(np.abs(freqs - np.sqrt(lo * hi))))]
        pooled.append(power[:, inside].mean(1))
    feats = np.log(np.stack(pooled, 1) + 1e-6).ravel()
    if with_spectrum:
        feats = np.concatenate([feats, log_mel.mean(1), log_mel.std(1)])
    return feats


def fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """(clips, classes) each clip's class probabilities from the model fitted on the other folds."""
    n_classes = int(labels.max()) + 1
    probs = np.zeros((len(labels), n_classes))
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
        clf.fit(features[train], labels[train])
        probs[np.ix_(test, clf.classes_)] = clf.predict_proba(features[test])
    return probs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="a data set soundformer reads (folder or CSV), with folds")
    ap.add_argument("--settings", default="1024/320,512/320,512/160,512/80",
                    help="comma-separated WINDOW/HOP pairs in samples (default: %(default)s)")
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--seconds", type=float, default=5.0, help="clip length the features are taken over")
    ap.add_argument("--bands", type=int, default=16, help="mel bands (default: %(default)s)")
    ap.add_argument("--bins", type=int, default=16, help="modulation-frequency bin edges (default: %(default)s)")
    ap.add_argument("--with-spectrum", action="store_true",
                    help="add each band's mean and spread of log energy (spectral shape) to the features")
    ap.add_argument("--save-probs", default="", metavar="NPZ",
                    help="write each clip's out-of-fold class probabilities per setting (for benchmarks/late_fusion.py)")
    ap.add_argument("--clips", default="", help="comma-separated file names whose predictions to print")
    args = ap.parse_args(argv)
    settings = []
    for pair in args.settings.split(","):
        try:
            n_fft, hop = (int(v) for v in pair.split("/"))
        except ValueError:
            raise SystemExit(f"--settings: {pair!r} is not WINDOW/HOP in samples, e.g. 512/160") from None
        settings.append((n_fft, hop))
    manifest = load_manifest(args.data)
    length = int(args.seconds * args.sample_rate)
    wavs = [fit_length(load(it.path, args.sample_rate), length, "loop")[:length] for it in manifest.items]
    labels = np.array([it.label for it in manifest.items])
    folds = np.array([it.fold for it in manifest.items])
    what = "modulation spectra and band levels" if args.with_spectrum else "modulation spectra alone"
    print(f"{len(wavs)} clips, {len(manifest.classes)} classes, folds {manifest.folds}; "
          f"{args.bands} mel bands, logistic regression on {what}")
    print("| window / hop (samples) | window / hop (ms) | accuracy per fold (%) | mean |")
    print("|---|---|---|---|")
    wanted = {c.strip() for c in args.clips.split(",") if c.strip()}
    named = []
    saved = {"paths": np.array([str(it.path.resolve()) for it in manifest.items]), "labels": labels, "folds": folds}
    for n_fft, hop in settings:
        feats = np.stack([modulation_features(w, sample_rate=args.sample_rate, n_fft=n_fft, hop=hop, bands=args.bands,
                                              bins=args.bins, with_spectrum=args.with_spectrum) for w in wavs])
        probs = fold_probabilities(feats, labels, folds)
        saved[f"probs_{n_fft}_{hop}"] = probs
        guess = probs.argmax(1)
        accs = 100 * np.array([(guess[folds == f] == labels[folds == f]).mean() for f in np.unique(folds)])
        ms = f"{1000 * n_fft / args.sample_rate:g} / {1000 * hop / args.sample_rate:g}"
        print(f"| {n_fft} / {hop} | {ms} | {' / '.join(f'{a:.1f}' for a in accs)} | {accs.mean():.2f} % |")
        for it, g in zip(manifest.items, guess):
            if it.path.name in wanted:
                named.append(f"{n_fft}/{hop}  {it.path.name}  {it.class_name} -> {manifest.classes[g]}")
    if named:
        print("\n".join(["", "named clips (window/hop, clip, true -> predicted):", *named]))
    if args.save_probs:
        np.savez(args.save_probs, **saved)
        print(f"out-of-fold probabilities: {args.save_probs} (keys {', '.join(k for k in saved if k.startswith('probs'))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
