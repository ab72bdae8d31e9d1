"""Predictions and metrics: clip-level probabilities from window averages, sklearn metrics."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data.dataset import clip_windows


def crop_starts(window: int, crop_length: int, crops: int) -> np.ndarray:
    """Offsets of ``crops`` crops of ``crop_length`` samples, evenly spaced over a window."""
    return np.linspace(0, window - crop_length, crops).round().astype(int)


@torch.no_grad()
def window_probs(model: nn.Module, x: torch.Tensor, *, crops: int = 0, crop_length: int = 0) -> torch.Tensor:
    """(B, n_classes) softmax of windows ``x`` (B, window). With ``crops`` > 0 (and crops shorter
    than the window), each window's probabilities are averaged 50/50 with the mean over
    ``crops`` crops of ``crop_length`` samples at evenly spaced offsets: the test-time counterpart
    of training on crops (``augment.crop_fraction``), which sees both the whole window and views
    of the length it trained on."""
    probs = model(x).float().softmax(-1)
    if crops <= 0 or not 0 < crop_length < x.shape[-1]:
        return probs
    cut = torch.stack([x[:, s : s + crop_length] for s in crop_starts(x.shape[-1], crop_length, crops)], 1)
    crop_probs = model(cut.flatten(0, 1)).float().softmax(-1)  # (B * crops, n_classes)
    return 0.5 * probs + 0.5 * crop_probs.view(len(x), crops, -1).mean(1)


def crop_length(window: int, crop_fraction: float) -> int:
    """Samples per crop of a ``window``-sample window: training crops and evaluation crops alike."""
    return max(1, round(window * crop_fraction))


def crop_length_range(window: int, crop_fraction: float, crop_spread: float) -> tuple[int, int]:
    """Shortest and longest training crop (samples) for ``augment.crop_spread``: the loader cuts
    the longest, and each batch is cut again to a length between the two (equal when no spread)."""
    return crop_length(window, crop_fraction - crop_spread), crop_length(window, crop_fraction + crop_spread)


@torch.no_grad()
def predict_clips(
    model: nn.Module, clips: list[np.ndarray], *, window: int, hop: int, batch_size: int = 64,
    device: torch.device | str = "cpu", short_policy: str = "pad", crops: int = 0, crop_length: int = 0,
) -> np.ndarray:
    """(n_clips, n_classes) probabilities: the mean of the softmax over each clip's windows
    (each window averaged with its crops when ``crops`` > 0; see ``window_probs``)."""
    model.eval()
    out = []
    pending: list[torch.Tensor] = []
    owners: list[int] = []

    def flush():
        if not pending:
            return
        x = torch.cat(pending).to(device)
        probs = []
        for i in range(0, len(x), batch_size):
            probs.append(window_probs(model, x[i : i + batch_size], crops=crops, crop_length=crop_length).cpu())
        probs = torch.cat(probs)
        own = torch.as_tensor(owners)
        for c in own.unique(sorted=True).tolist():
            out.append(probs[own == c].mean(0))
        pending.clear()
        owners.clear()

    for i, clip in enumerate(clips):
        w = clip_windows(clip, window, hop, short_policy)  # (W, window)
        pending.append(w)
        owners.extend([i] * len(w))
        if len(owners) >= batch_size * 4:
            flush()
    flush()
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.stack(out).numpy()


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean()) if len(labels) else float("nan")


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    if not len(labels):
        return float("nan")
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def full_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Everything the report shows for one set of predictions."""
    from sklearn.metrics import (
        classification_report,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
        roc_curve,
    )

    n = len(classes)
    pred = probs.argmax(1)
    ids = list(range(n))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    onehot = np.eye(n)[labels]
    roc = {}
    aucs = {}
    for c in ids:
        if 0 < onehot[:, c].sum() < len(labels):
            fpr, tpr, _ = roc_curve(onehot[:, c], probs[:, c])
            roc[classes[c]] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
            aucs[classes[c]] = float(roc_auc_score(onehot[:, c], probs[:, c]))
    present = [c for c in ids if 0 < onehot[:, c].sum() < len(labels)]
    micro = macro = float("nan")
    if len(present) >= 2:
        micro = float(roc_auc_score(onehot[:, present], probs[:, present], average="micro"))
        macro = float(np.mean([aucs[classes[c]] for c in present]))
        fpr, tpr, _ = roc_curve(onehot[:, present].ravel(), probs[:, present].ravel())
        roc["micro"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    pm, rm, fm, _ = precision_recall_fscore_support(labels, pred, labels=ids, average="macro", zero_division=0)
    pw, rw, fw, _ = precision_recall_fscore_support(labels, pred, labels=ids, average="weighted", zero_division=0)
    return {
        "accuracy": accuracy(labels, probs),
        "loss": nll(labels, probs),
        "n": int(len(labels)),
        "per_class": {
            classes[c]: {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]), "support": int(s[c])}
            for c in ids
        },
        "macro": {"precision": float(pm), "recall": float(rm), "f1": float(fm)},
        "weighted": {"precision": float(pw), "recall": float(rw), "f1": float(fw)},
        "confusion": confusion_matrix(labels, pred, labels=ids).tolist(),
        "auc": {"per_class": aucs, "micro": micro, "macro": macro},
        "roc": roc,
        "classification_report": classification_report(
            labels, pred, labels=ids, target_names=classes, zero_division=0, digits=3
        ),
    }
