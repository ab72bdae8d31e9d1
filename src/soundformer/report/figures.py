"""Matplotlib figures for the report. Each function draws one figure and saves it as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

plt.rcParams.update({
    "figure.dpi": 100, "savefig.dpi": 110, "font.size": 11, "axes.titlesize": 13,
    "axes.labelsize": 11, "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
})


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def counts_bar(per_class: dict[str, int], per_fold: dict, path: Path) -> Path:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    names = list(per_class)
    a.barh(names[::-1], [per_class[n] for n in names][::-1], color="#4C72B0")
    a.set(title="Clips per class", xlabel="clips")
    folds = [str(f) for f in per_fold]
    b.bar(folds, list(per_fold.values()), color="#55A868")
    b.set(title="Clips per fold", xlabel="fold", ylabel="clips")
    return _save(fig, path)


def durations_hist(durations: list[float], rates: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(durations, bins=30, color="#8172B2")
    rates_text = ", ".join(f"{r} Hz x {n}" for r, n in rates.items())
    ax.set(title=f"Clip durations (sample rates: {rates_text})", xlabel="seconds", ylabel="clips")
    return _save(fig, path)


def class_examples(examples: list[tuple[str, np.ndarray, np.ndarray]], sr: int, hop: int, path: Path) -> Path:
    """One row per class: waveform and log-mel spectrogram."""
    n = len(examples)
    fig, axes = plt.subplots(n, 2, figsize=(12, 1.9 * n), squeeze=False)
    for row, (name, wav, spec) in enumerate(examples):
        t = np.arange(len(wav)) / sr
        axes[row, 0].plot(t, wav, lw=0.5, color="#4C72B0")
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center")
        axes[row, 0].set_xlim(0, t[-1] if len(t) else 1)
        axes[row, 1].imshow(spec, origin="lower", aspect="auto", cmap="magma",
                            extent=(0, spec.shape[1] * hop / sr, 0, spec.shape[0]))
        axes[row, 1].grid(False)
        if row < n - 1:
            axes[row, 0].set_xticklabels([])
            axes[row, 1].set_xticklabels([])
    axes[0, 0].set_title("Waveform")
    axes[0, 1].set_title("Log-mel spectrogram (mel bins)")
    axes[-1, 0].set_xlabel("seconds")
    axes[-1, 1].set_xlabel("seconds")
    return _save(fig, path)


def curves(histories: dict[str, list[dict]], model: str, path: Path) -> Path:
    """Loss and accuracy, train and validation, per fold (thin) and their mean (thick)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric in zip(axes, ("loss", "acc")):
        for split, color in (("train", "#4C72B0"), ("val", "#DD8452")):
            key = f"{split}_{metric}"
            series = [np.array([float(r[key]) for r in h if r.get(key) not in (None, "")]) for h in histories.values()]
            series = [s for s in series if len(s)]
            for s in series:
                ax.plot(np.arange(1, len(s) + 1), s, color=color, alpha=0.3, lw=1)
            if series:
                n = min(len(s) for s in series)
                ax.plot(np.arange(1, n + 1), np.mean([s[:n] for s in series], 0), color=color, lw=2.2,
                        label=f"{'train' if split == 'train' else 'validation'} (mean of {len(series)})")
        ax.set(title=f"{model}: {'loss' if metric == 'loss' else 'accuracy'}", xlabel="epoch",
               ylabel="cross-entropy" if metric == "loss" else "accuracy")
        ax.legend()
    return _save(fig, path)


def confusion(matrix: np.ndarray, classes: list[str], title: str, path: Path) -> Path:
    m = np.asarray(matrix, dtype=float)
    norm = m / np.clip(m.sum(1, keepdims=True), 1, None)
    size = max(6, 0.55 * len(classes) + 3)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size * 0.85))
    for ax, data, sub, fmt in ((axes[0], m, "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}")):
        ax.imshow(data, cmap="Blues", vmin=0)
        ax.grid(False)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set(xlabel="predicted", ylabel="true", title=f"{title} ({sub})")
        hi = data.max() or 1
        for i in range(len(classes)):
            for j in range(len(classes)):
                if data[i, j]:
                    ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if data[i, j] > hi / 2 else "black")
    return _save(fig, path)


def f1_bars(per_class: dict[str, dict], title: str, path: Path) -> Path:
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(names) + 3), 4))
    values = [per_class[n]["f1"] for n in names]
    ax.bar(range(len(names)), values, color="#55A868")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    ax.set(title=title, ylabel="F1", ylim=(0, 1.1))
    return _save(fig, path)


def roc(roc_data: dict, aucs: dict, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10")
    for i, (name, curve) in enumerate((k, v) for k, v in roc_data.items() if k != "micro"):
        ax.plot(curve["fpr"], curve["tpr"], lw=1.2, color=cmap(i % 10),
                label=f"{name} (AUC {aucs['per_class'].get(name, float('nan')):.3f})")
    if "micro" in roc_data:
        ax.plot(roc_data["micro"]["fpr"], roc_data["micro"]["tpr"], "k--", lw=2,
                label=f"micro-average (AUC {aucs['micro']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(title=f"{title} (macro AUC {aucs['macro']:.3f})", xlabel="false positive rate",
           ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def overlay(histories: dict[str, dict[str, list[dict]]], path: Path) -> Path:
    """The report's Figures 31-34 in one: mean curves of every model, four panels."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    panels = [("train_acc", "Training accuracy"), ("train_loss", "Training loss"),
              ("val_acc", "Validation accuracy"), ("val_loss", "Validation loss")]
    cmap = plt.get_cmap("tab10")
    for ax, (key, title) in zip(axes.ravel(), panels):
        for i, (model, runs) in enumerate(histories.items()):
            series = [np.array([float(r[key]) for r in h if r.get(key) not in (None, "")]) for h in runs.values()]
            series = [s for s in series if len(s)]
            if not series:
                continue
            n = min(len(s) for s in series)
            ax.plot(np.arange(1, n + 1), np.mean([s[:n] for s in series], 0), color=cmap(i % 10), lw=1.8,
                    label=model.split(" (")[0])
        ax.set(title=title, xlabel="epoch", ylabel="accuracy" if "acc" in key else "cross-entropy")
        ax.legend(fontsize=8)
    return _save(fig, path)


def attention_over_spectrogram(spec: np.ndarray, cls_attention: np.ndarray, title: str, sr: int,
                               hop: int, path: Path) -> Path:
    """CLS-token attention of each head (rows) drawn over the clip's log-mel spectrogram."""
    heads, tokens = cls_attention.shape
    fig, axes = plt.subplots(heads, 1, figsize=(10, 1.9 * heads + 0.8), squeeze=False)
    seconds = spec.shape[1] * hop / sr
    centers = (np.arange(tokens) + 0.5) / tokens * seconds
    for h in range(heads):
        ax = axes[h, 0]
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, spec.shape[0]))
        ax.grid(False)
        twin = ax.twinx()
        twin.plot(centers, cls_attention[h], color="#00E5FF", lw=2)
        twin.fill_between(centers, 0, cls_attention[h], color="#00E5FF", alpha=0.25)
        twin.set_ylim(0, cls_attention.max() * 1.1 + 1e-9)
        twin.set_ylabel("attention", color="#00A0B0")
        twin.grid(False)
        ax.set_ylabel(f"head {h + 1}\nmel bin")
        if h < heads - 1:
            ax.set_xticklabels([])
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("seconds")
    return _save(fig, path)


def attention_over_tokens(cls_attention: np.ndarray, title: str, path: Path) -> Path:
    """For token layouts without a time axis (the report's channel tokens): a bar per token."""
    heads, tokens = cls_attention.shape
    fig, axes = plt.subplots(heads, 1, figsize=(10, 1.6 * heads + 0.8), squeeze=False)
    for h in range(heads):
        axes[h, 0].bar(np.arange(tokens), cls_attention[h], color="#C44E52")
        axes[h, 0].set_ylabel(f"head {h + 1}")
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("token (CNN channel)")
    return _save(fig, path)


def spectrogram(spec: np.ndarray, title: str, sr: int, hop: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, spec.shape[1] * hop / sr, 0, spec.shape[0]))
    ax.grid(False)
    ax.set(title=title, xlabel="seconds", ylabel="mel bin")
    return _save(fig, path)
