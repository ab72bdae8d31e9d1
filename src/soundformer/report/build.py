"""``soundformer report``: run folders -> report.html (self-contained), report.md + PNGs, results.json.

A RUN_DIR is either one training run (it holds ``summary.json``) or a cross-validation folder
(its sub-folders are runs, ``cv_summary.json`` names the protocol). Reports only read run
folders; nothing here trains.
"""

from __future__ import annotations

import base64
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .. import checkpoint
from ..config import Config, read_config
from ..data import audio as audio_io
from ..errors import SoundformerError
from ..evaluate import full_metrics
from ..features import LogMel
from ..models import build_model, count_macs
from . import figures
from .render import render_html, render_markdown

MAX_MISTAKES = 8
ATTENTION_CLIPS = 3


@dataclass
class ModelRuns:
    label: str
    folder: Path
    jobs: dict[str, Path]
    protocol: str
    cfg: Config


def discover(path: Path) -> ModelRuns:
    path = Path(path)
    if (path / "summary.json").exists():
        jobs = {path.name: path}
        protocol = "single run"
    else:
        jobs = {p.name: p for p in sorted(path.iterdir()) if (p / "summary.json").exists()} if path.is_dir() else {}
        if not jobs:
            raise SoundformerError(
                f"{path} holds no finished runs (no summary.json); pass a run folder or a cv/study folder"
            )
        cv = path / "cv_summary.json"
        protocol = json.loads(cv.read_text())["protocol"] if cv.exists() else "folds"
    cfg = read_config(next(iter(jobs.values())) / "config.yaml")
    label = cfg.name + (f" ({cfg.description.split('[', 1)[1].rstrip(']')})" if "[" in cfg.description else "")
    return ModelRuns(label, path, jobs, protocol, cfg)


def _history(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _display_logmel(sr: int) -> LogMel:
    return LogMel(sample_rate=sr, n_fft=1024, hop_length=sr // 50, n_mels=64)


def _logmel_image(lm: LogMel, wav: np.ndarray) -> np.ndarray:
    """(M, T) image of a clip; of a two-channel front-end (log+pcen), its first channel."""
    with torch.no_grad():
        img = lm(torch.from_numpy(np.ascontiguousarray(wav))[None])[0].numpy()
    return img[0] if img.ndim == 3 else img


def data_section(cfg: Config, data_path: Path, fig_dir: Path) -> dict:
    from ..data.info import describe
    from ..data.sources import load_manifest

    d = cfg.data
    manifest = load_manifest(data_path, format=d.format, subset=d.subset, k_folds=d.k_folds,
                             split_seed=d.split_seed, allow_outside_root=d.allow_outside_root)
    durations: list[float] = []
    info = describe(manifest, durations)
    sr = cfg.audio.sample_rate
    lm = _display_logmel(sr)
    examples = []
    for label, name in enumerate(manifest.classes):
        item = next((it for it in manifest.items if it.label == label), None)
        if item is None:
            continue
        try:
            wav = audio_io.load(item.path, sr)
        except audio_io.AudioError:
            continue
        examples.append((name, wav, _logmel_image(lm, wav)))
    info["figures"] = {
        "counts": figures.counts_bar(info["per_class"], info["per_fold"], fig_dir / "data_counts.png").name,
        "durations": figures.durations_hist(durations, info["sample_rates"], fig_dir / "data_durations.png").name,
        "examples": figures.class_examples(examples, sr, lm.hop_length, fig_dir / "data_examples.png").name,
    }
    return info


def model_section(runs: ModelRuns, fig_dir: Path, slug: str) -> dict:
    cfg = runs.cfg
    summaries = {name: json.loads((p / "summary.json").read_text()) for name, p in runs.jobs.items()}
    histories = {name: _history(p) for name, p in runs.jobs.items()}
    classes = next(iter(summaries.values()))["classes"]
    preds = {name: np.load(p / "predictions.npz") for name, p in runs.jobs.items()}
    with_test = {n: p for n, p in preds.items() if "test_probs" in p}
    per_fold = {
        name: {k: s.get(k) for k in ("train_acc", "val_acc", "test_acc", "best_epoch", "epochs_run",
                                      "train_time_s", "inference_ms_per_clip", "selected")}
        for name, s in summaries.items()
    }

    def mean_std(key):
        vals = [s[key] for s in summaries.values() if s.get(key) is not None]
        return (float(np.mean(vals)), float(np.std(vals))) if vals else (float("nan"), float("nan"))

    out: dict = {"label": runs.label, "preset": cfg.name, "folder": str(runs.folder), "protocol": runs.protocol,
                 "description": cfg.description, "per_fold": per_fold}
    for key in ("train_acc", "val_acc", "test_acc"):
        m, s = mean_std(key)
        out[f"{key}_mean"], out[f"{key}_std"] = m, s
    # one set of test predictions for the detailed metrics: the ensemble when every fold model
    # saw the same test clips (report protocol), else all folds' test clips pooled (standard)
    if with_test:
        first = next(iter(with_test.values()))
        same = all(np.array_equal(p["test_paths"], first["test_paths"]) for p in with_test.values())
        if same:
            probs = np.mean([p["test_probs"] for p in with_test.values()], 0)
            labels, paths = first["test_labels"], first["test_paths"]
            out["evaluated_on"] = f"held-out test clips, averaged predictions of {len(with_test)} fold model(s)"
            if len(with_test) > 1:
                out["ensemble_test_acc"] = float((probs.argmax(1) == labels).mean())
        else:
            probs = np.concatenate([p["test_probs"] for p in with_test.values()])
            labels = np.concatenate([p["test_labels"] for p in with_test.values()])
            paths = np.concatenate([p["test_paths"] for p in with_test.values()])
            out["evaluated_on"] = "every fold's test clips pooled (each clip predicted by the model that never saw it)"
        metrics = full_metrics(labels, probs, classes)
        out["test_metrics"] = {k: v for k, v in metrics.items() if k != "roc"}
        out["figures"] = {
            "confusion": figures.confusion(np.array(metrics["confusion"]), classes, cfg.name,
                                           fig_dir / f"{slug}_confusion.png").name,
            "f1": figures.f1_bars(metrics["per_class"], f"{cfg.name}: per-class F1", fig_dir / f"{slug}_f1.png").name,
            "roc": figures.roc(metrics["roc"], metrics["auc"], f"{cfg.name}: one-vs-rest ROC", fig_dir / f"{slug}_roc.png").name,
        }
    else:
        out["figures"] = {}
    out["figures"]["curves"] = figures.curves(histories, cfg.name, fig_dir / f"{slug}_curves.png").name
    s0 = next(iter(summaries.values()))
    model = build_model(cfg, len(classes))
    window = int(round(cfg.audio.window_seconds * cfg.audio.sample_rate))
    per_clip = max(1, round(5.0 / cfg.audio.window_seconds))
    out.update({
        "params_trainable": s0["params_trainable"], "params_non_trainable": s0["params_non_trainable"],
        "macs_per_5s_clip": int(count_macs(model, window) * per_clip),
        "train_time_s_total": float(sum(s["train_time_s"] for s in summaries.values())),
        "train_time_s_per_fold": float(np.mean([s["train_time_s"] for s in summaries.values()])),
        "inference_ms_per_clip": float(np.mean([s.get("inference_ms_per_clip", np.nan) for s in summaries.values()])),
        "classes": classes,
    })
    if with_test:
        job = next(iter(with_test))
        weights = checkpoint.load(runs.jobs[job] / "checkpoints" / "model.pt")["model"]
        model.load_state_dict(weights)
        model.eval()
        out["mistakes"] = mistakes(cfg, probs, labels, paths, classes, fig_dir, slug)
        transformers = [m for m in model.members() if hasattr(m, "encoder")]
        if transformers:  # an ensemble shows its first member's attention
            out["attention"] = attention_maps(cfg, transformers[0], with_test[job], classes, fig_dir, slug)
    return out


def mistakes(cfg, probs, labels, paths, classes, fig_dir: Path, slug: str) -> list[dict]:
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    wrong = wrong[np.argsort(-probs[wrong].max(1))][:MAX_MISTAKES]  # most confident errors first
    sr = cfg.audio.sample_rate
    lm = _display_logmel(sr)
    out = []
    for rank, i in enumerate(wrong):
        top = np.argsort(-probs[i])[:3]
        entry = {"path": str(paths[i]), "true": classes[labels[i]], "predicted": classes[top[0]],
                 "top3": [{"class": classes[c], "p": float(probs[i, c])} for c in top]}
        try:
            wav = audio_io.load(paths[i], sr)
        except (audio_io.AudioError, OSError):
            out.append(entry)
            continue
        title = f"true: {entry['true']} / predicted: {entry['predicted']}"
        entry["spectrogram"] = figures.spectrogram(_logmel_image(lm, wav), title, sr, lm.hop_length,
                                                   fig_dir / f"{slug}_mistake{rank + 1}.png").name
        wav_name = f"{slug}_mistake{rank + 1}.wav"
        sf.write(fig_dir / wav_name, wav, sr, subtype="PCM_16")
        entry["audio_file"] = wav_name
        out.append(entry)
    return out


@torch.no_grad()
def attention_maps(cfg, model, preds, classes, fig_dir: Path, slug: str) -> list[dict]:
    """CLS attention of every head of the last block for a few correctly classified test clips."""
    sr = cfg.audio.sample_rate
    window = int(round(cfg.audio.window_seconds * sr))
    chosen, seen = [], set()
    for i, (p, y) in enumerate(zip(preds["test_probs"], preds["test_labels"])):
        if p.argmax() == y and y not in seen:
            chosen.append(i)
            seen.add(int(y))
        if len(chosen) == ATTENTION_CLIPS:
            break
    lm = model.frontend.logmel if model.uses_logmel else _display_logmel(sr)
    out = []
    for rank, i in enumerate(chosen):
        wav = audio_io.fit_length(audio_io.load(preds["test_paths"][i], sr), window, cfg.audio.short_policy)[:window]
        x = torch.from_numpy(np.ascontiguousarray(wav))[None]
        _, maps = model.embed_features(model.frontend(x), need_weights=True)
        cls = maps[-1][0, :, 0, 1:].numpy()  # (H, T): what the CLS token reads in the last block
        name = classes[preds["test_labels"][i]]
        member = f" ({cfg.model.ensemble[0]} member)" if cfg.model.ensemble else ""
        title = f"{cfg.name}{member}: CLS attention, last block, '{name}'"
        path = fig_dir / f"{slug}_attention{rank + 1}.png"
        if getattr(model, "token_layout", "time") == "channels":
            figures.attention_over_tokens(cls, title + " (tokens are CNN channels, no time axis)", path)
        else:
            figures.attention_over_spectrogram(_logmel_image(lm, wav), cls, title, sr, lm.hop_length, path)
        out.append({"class": name, "path": str(preds["test_paths"][i]), "figure": path.name})
    return out


def build_report(run_dirs: list[Path], out: Path, *, data: Path | None = None, title: str = "soundformer report",
                 log=print) -> dict:
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    models = [discover(p) for p in run_dirs]
    if not models:
        raise SoundformerError("no run folders given")
    t0 = time.perf_counter()
    results: dict = {"title": title, "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "models": {}}
    data_path = data or (Path(models[0].cfg.data.path) if models[0].cfg.data.path else None)
    if data_path and Path(data_path).exists():
        log("report: data section")
        results["data"] = data_section(models[0].cfg, Path(data_path), fig_dir)
    used = set()
    for runs in models:
        slug = runs.cfg.name
        while slug in used:
            slug += "-2"
        used.add(slug)
        log(f"report: {runs.label}")
        results["models"][runs.label] = model_section(runs, fig_dir, slug)
        results["models"][runs.label]["slug"] = slug
    histories = {r.label: {n: _history(p) for n, p in r.jobs.items()} for r in models}
    results["comparison_figure"] = figures.overlay(histories, fig_dir / "comparison_curves.png").name
    results["comparison"] = [
        {"model": label, "train_acc_mean": m["train_acc_mean"], "val_acc_mean": m["val_acc_mean"],
         "val_acc_std": m["val_acc_std"], "test_acc_mean": m["test_acc_mean"], "test_acc_std": m["test_acc_std"],
         "ensemble_test_acc": m.get("ensemble_test_acc"), "params_trainable": m["params_trainable"],
         "macs_per_5s_clip": m["macs_per_5s_clip"], "folds": len(m["per_fold"])}
        for label, m in results["models"].items()
    ]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    (out / "report.md").write_text(render_markdown(results))
    (out / "report.html").write_text(render_html(results, fig_dir, wav_base64=_file_b64))
    log(f"report written to {out} in {time.perf_counter() - t0:.0f} s")
    return results


def _file_b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj))
