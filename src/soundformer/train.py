"""One training job: (config, train/val/test items) -> a run folder.

A run folder holds ``config.yaml`` (resolved), ``metrics.csv`` (one row per epoch),
``checkpoints/last.pt`` (resumable) and ``checkpoints/best.pt``, ``predictions.npz``,
``summary.json`` and, once everything is written, a ``done`` marker.

Leak-free by construction: the test items are decoded up front only to check they are
readable; they are not touched again until training has finished and a checkpoint has been
chosen with the validation data.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import checkpoint, sam
from .config import Config, band_top, from_dict, save_config
from .data import audio as audio_io
from .data.dataset import WindowDataset
from .data.sources import Item, Manifest
from .distributed import init_from_env, shutdown
from .errors import Interrupted, SoundformerError
from .evaluate import accuracy, crop_length, crop_length_range, nll, predict_clips
from .features import (
    apply_mix,
    draw_mix,
    mix_waveforms,
    random_crops,
    random_eq,
    random_gain,
    random_lowpass,
    spec_augment,
    speed_perturb,
    time_cutmix,
    time_shift,
)
from .models import AudioClassifier, StandardisedFrontEnd, build_model, count_parameters
from .runtime import autocast_dtype, pick_device, place_model, seed_everything, set_threads
from .tracking import Tracker

DONE = "done"


@dataclass
class Split:
    train: list[Item]
    val: list[Item]
    test: list[Item] = field(default_factory=list)
    names: dict[str, list[int]] = field(default_factory=dict)  # fold numbers per role, for the record


@dataclass
class Clips:
    items: list[Item]
    audio: list[np.ndarray]

    @property
    def labels(self) -> np.ndarray:
        return np.array([it.label for it in self.items], dtype=np.int64)


def warmup_ema_update(decay: float):
    """Weight-EMA update whose decay ramps up: min(decay, (1 + n) / (10 + n)) after n updates.

    A fixed decay keeps decay**steps of the first (near-random) weights to the end: 24 % after
    720 steps at 0.998, which cost 40+ points on ESC-10. The ramp (as in timm's ModelEmaV2/V3
    warm-up) lets early weights fade out, so the average follows the last few epochs."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = int(n_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(ema_params[0]):
            torch._foreach_lerp_(ema_params, params, 1 - d)
        else:  # integer buffers (BatchNorm's batch counter): keep the latest
            for e, p in zip(ema_params, params, strict=True):
                e.copy_(p)

    return update


def window_samples(cfg: Config) -> int:
    return int(round(cfg.audio.window_seconds * cfg.audio.sample_rate))


def loader_length(cfg: Config) -> int:
    """Samples per training example as the loader gives them to ``TrainStep``: whole windows with
    ``augment.member_crops`` (each member cuts its own crops), else the longest training crop
    (``TrainStep`` cuts each batch shorter with ``augment.crop_spread``)."""
    window = window_samples(cfg)
    a = cfg.augment
    return window if a.member_crops else crop_length_range(window, a.crop_fraction, a.crop_spread)[1]


def fit_bandwidth(cfg: Config, train_items: list[Item], log: Callable[[str], None]) -> Config:
    """``features.fit_bandwidth``: a copy of ``cfg`` whose mel bands stop at half the native
    sample rate that 90 % of the training clips reach (their 10th percentile), where that is
    below ``features.f_max``. Only the training clips are read, and only their headers."""
    f = cfg.features
    if f.kind != "logmel" or not f.fit_bandwidth or not train_items:
        return cfg
    rates = [r for r in (audio_io.native_sample_rate(it.path) for it in train_items) if r]
    if not rates:
        return cfg
    limit = float(np.percentile(rates, 10, method="lower")) / 2
    current = band_top(cfg)
    if limit >= current:
        return cfg
    if limit <= f.f_min:
        log(f"warning: features.f_min={f.f_min} is above the training clips' bandwidth ({limit:g} Hz); "
            f"mel bands left as they are")
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.features.f_max = limit
    log(f"features.f_max set to {limit:g} Hz: a tenth or more of the training clips are sampled at "
        f"{2 * limit:g} Hz or less, so for them bands above hold no signal "
        f"(features.fit_bandwidth=false keeps {current:g} Hz)")
    return cfg


def load_split_audio(cfg: Config, split: Split, *, progress: bool, log: Callable[[str], None]) -> dict[str, Clips]:
    """Decode every file of the split (cached); bad files stop the job unless skip_bad is set."""
    every = split.train + split.val + split.test
    result = audio_io.load_many([it.path for it in every], cfg.audio.sample_rate,
                                cache=cfg.audio.cache, progress=progress)
    if result.bad:
        listing = "\n".join(f"  {reason}" for _, reason in result.bad[:20])
        more = f"\n  ... and {len(result.bad) - 20} more" if len(result.bad) > 20 else ""
        if not cfg.data.skip_bad:
            raise SoundformerError(
                f"{len(result.bad)} bad audio file(s):\n{listing}{more}\n"
                f"Fix or remove them, or pass --skip-bad to train without them."
            )
        log(f"skipping {len(result.bad)} bad audio file(s):\n{listing}{more}")
    by_path = {str(it.path): clip for it, clip in zip(every, result.audio)}
    out = {}
    for name, items in (("train", split.train), ("val", split.val), ("test", split.test)):
        kept = [it for it in items if by_path[str(it.path)] is not None]
        out[name] = Clips(kept, [by_path[str(it.path)] for it in kept])
    if not out["train"].items:
        raise SoundformerError("no usable training clips in this split")
    return out


def preflight(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an earlier run; check the folder is writable and has room."""
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not overwrite:
            raise SoundformerError(
                f"{run_dir} already holds a run; pick another --out, continue it with --resume, "
                f"or replace it with --overwrite"
            )
        shutil.rmtree(run_dir)
    if resume and not (run_dir / "checkpoints" / "last.pt").exists():
        raise SoundformerError(f"nothing to resume in {run_dir}: no checkpoints/last.pt")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise SoundformerError(f"cannot write to {run_dir}: {exc.strerror or exc}; choose a writable --out") from None


def check_disk_space(run_dir: Path, model: torch.nn.Module) -> None:
    need = sum(p.numel() for p in model.parameters()) * 4 * 3 * 3 + 50 * 2**20  # params + Adam, 3 files
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise SoundformerError(
            f"only {free / 2**20:.0f} MiB free at {run_dir}; this run needs about {need / 2**20:.0f} MiB. "
            f"Free some space or choose another --out"
        )


@torch.no_grad()
def fit_normalisation(model: AudioClassifier, clips: Clips, window: int, short_policy: str) -> None:
    """Per-feature mean/std of the *training* clips' features (log-mel: per mel bin over time),
    stored in the model (in each member of an ensemble, for its own front-end)."""
    for member in model.members():
        if isinstance(member.frontend, StandardisedFrontEnd):
            _fit_frontend(member.frontend, clips, window, short_policy)


def _fit_frontend(fe, clips: Clips, window: int, short_policy: str) -> None:
    total = total_sq = None
    count = 0
    for clip in clips.audio:
        x = torch.from_numpy(audio_io.fit_length(clip, window, short_policy))[None]
        spec = fe.raw(x)[0].double()  # (M, T), (C, M, T) or (F, 1)
        s, sq = spec.sum(-1, keepdim=True), spec.square().sum(-1, keepdim=True)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += spec.shape[-1]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp(min=1e-8).sqrt()
    fe.mean.copy_(mean.float())
    fe.std.copy_(std.float())


def lr_factor(cfg: Config, step: int, total: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` of ``total``."""
    t = cfg.train
    warm = int(round(t.warmup_epochs / t.epochs * total))
    if t.schedule == "constant":
        return min(1.0, (step + 1) / warm) if warm else 1.0
    if t.schedule == "cosine":
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    # onecycle: linear warm-up from lr/25, cosine down to lr/1e4 (torch's OneCycleLR shape)
    start, end = 1 / 25, 1 / 1e4
    if step < warm:
        return start + (1 - start) * step / max(1, warm)
    progress = (step - warm) / max(1, total - warm)
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


NO_DECAY_NAMES = ("cls_token", "pos_table")


def decays(name: str, param: torch.nn.Parameter) -> bool:
    """AdamW decays weight matrices and convolution kernels, not biases, norms, the CLS token or a
    learned position table. Matched on the parameter's own (last) name, so that a weight such as
    the ``to_tokens`` projection, whose path merely contains "token", still decays."""
    return param.ndim > 1 and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if decays(name, p) else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=t.lr
    )


class TrainStep(torch.nn.Module):
    """One forward pass of training: waveform -> augmented features -> loss, logits, soft targets.

    A module of its own so that DistributedDataParallel wraps the whole augmented forward. For
    an ensemble, each member draws its own augmentations and has its own loss; the loss returned
    is their sum (so each member gets the gradient it would get alone) and the logits/targets
    shown in the training accuracy are the first member's. With ``train.mutual_learning`` > 0
    (deep mutual learning, Zhang et al., 2018) the members share one mixup draw, so they learn
    the same soft targets, and each member's loss also has that weight times the KL divergence
    from the other members' mean prediction (held fixed) to its own; the loss returned (and
    logged as ``train_loss``) includes that term. ``augment.member_mixup_domains`` gives each
    member its own mixup domain: a ``waveform`` member hears its own mixture of the batch's
    sounds, a ``features`` member mixes its own features. With ``augment.cutmix_prob`` = P each
    member's batch is, with probability P (drawn per member), mixed by ``time_cutmix`` instead.
    With ``augment.member_crops`` each member cuts its own random crops of the batch's windows
    (otherwise one crop of each window serves every member).
    """

    def __init__(self, model: AudioClassifier, cfg: Config):
        super().__init__()
        self.model, self.aug, self.mutual = model, cfg.augment, cfg.train.mutual_learning
        self.criterion = LOSSES[cfg.train.loss]
        a = self.aug
        # one waveform mixture heard by every member, unless each member has its own domain
        self.shared_waveform_mix = bool(a.mixup_alpha) and not a.member_mixup_domains and a.mixup_domain == "waveform"
        # where each member mixes its own examples; None: it hears the shared mixture
        domains = a.member_mixup_domains or [a.mixup_domain] * len(model.members())
        self.domains = [None] * len(domains) if self.shared_waveform_mix else domains
        # augment.crop_spread: each batch is cut to a length drawn between the shortest and the
        # longest crop; augment.member_crops: the loader gives whole windows and each member cuts
        # its own crops (None: the loader's crops as they are)
        shortest, longest = crop_length_range(window_samples(cfg), a.crop_fraction, a.crop_spread)
        self.crop_lengths = (shortest, longest) if shortest < longest or a.member_crops else None
        self.sample_rate = cfg.audio.sample_rate
        self.lowpass_top = band_top(cfg)  # of the fitted band

    def forward(self, wav: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.aug
        if not a.member_crops:  # one crop of each window for every member
            wav = self.crop(wav)
        if a.gain_db:
            wav = random_gain(wav, max_db=a.gain_db)
        if a.time_shift:
            wav = time_shift(wav, max_fraction=a.time_shift)
        if a.speed:
            wav = speed_perturb(wav, max_change=a.speed)
        if a.lowpass_prob:
            wav = random_lowpass(wav, prob=a.lowpass_prob, sample_rate=self.sample_rate, min_hz=a.lowpass_min_hz,
                                 max_hz=self.lowpass_top, atten_db=a.lowpass_db)
        if self.shared_waveform_mix:
            wav, target = mix_waveforms(wav, target, alpha=a.mixup_alpha)
        shared_mix = None
        if self.mutual and a.mixup_alpha and a.mixup_domain == "features":  # one draw for every member
            shared_mix = draw_mix(wav.shape[0], alpha=a.mixup_alpha, device=wav.device)
        outputs = [self.member_forward(member, wav, target, shared_mix, domain)
                   for member, domain in zip(self.model.members(), self.domains)]
        loss = sum(self.criterion(logits, soft) for logits, soft in outputs)
        if self.mutual and len(outputs) > 1:
            loss = loss + self.mutual * mutual_kl([logits for logits, _ in outputs])
        return loss, *outputs[0]  # (), (B, C), (B, C)

    def crop(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, L): each window cut at its own random start, to one length per call
        drawn between the shortest and the longest crop (as it is when nothing is left to cut)."""
        if not self.crop_lengths:
            return wav
        shortest, longest = self.crop_lengths
        return random_crops(wav, length=int(torch.randint(shortest, longest + 1, ()).item()))

    def member_forward(self, model: AudioClassifier, wav: torch.Tensor, target: torch.Tensor,
                       shared_mix: tuple[torch.Tensor, torch.Tensor] | None = None, domain: str | None = "features"):
        a = self.aug
        if a.member_crops:  # this member's own crops of the (mixed) whole windows
            wav = self.crop(wav)
        if a.mixup_alpha and domain == "waveform":  # this member's own mixture
            wav, target = mix_waveforms(wav, target, alpha=a.mixup_alpha)
        feats = model.frontend(wav)
        if model.uses_logmel and a.eq_db:
            # dB -> natural-log units -> the frontend's per-bin standardised units
            gain = random_eq(feats.shape[0], feats.shape[1], max_db=a.eq_db, points=a.eq_points).to(feats.device)
            feats = feats + gain[:, :, None] * (math.log(10) / 10) / model.frontend.std  # (B, M, T)
        if model.uses_logmel and (a.freq_masks or a.time_masks):
            feats = spec_augment(feats, freq_masks=a.freq_masks, freq_width=a.freq_mask_width,
                                 time_masks=a.time_masks, time_width=a.time_mask_width)
        if a.cutmix_prob and model.uses_logmel and torch.rand(()) < a.cutmix_prob:  # in place of mixup
            feats, target = time_cutmix(feats, target)
        elif a.mixup_alpha and domain == "features":  # the shared draw, or the member's own
            mix = shared_mix or draw_mix(feats.shape[0], alpha=a.mixup_alpha, device=feats.device)
            feats, target = apply_mix(feats, target, *mix)
        return model.head(model.embed_features(feats)[0]), target  # (B, C), (B, C)


def mutual_kl(logits: list[torch.Tensor]) -> torch.Tensor:
    """Sum over members of KL(mean of the other members' probabilities || this member's), the
    others held fixed (no gradient flows into the teacher side), averaged over the batch."""
    log_probs = [F.log_softmax(x.float(), dim=-1) for x in logits]  # each (B, C)
    probs = torch.stack([lp.detach().exp() for lp in log_probs])  # (N, B, C)
    summed = probs.sum(0)  # (B, C)
    total = 0.0
    for i, log_p in enumerate(log_probs):
        others = (summed - probs[i]) / (len(log_probs) - 1)  # (B, C)
        total = total + (others * (others.clamp(min=1e-12).log() - log_p)).sum(-1).mean()
    return total


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def soft_binary_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One sigmoid per class against the soft target (a mixed clip is partly both classes),
    summed over classes so its gradient is on the scale of softmax cross-entropy's; averaged over
    the batch."""
    return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").sum(-1).mean()


LOSSES = {"ce": soft_cross_entropy, "bce": soft_binary_cross_entropy}  # train.loss


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_job(
    cfg: Config,
    manifest: Manifest,
    split: Split,
    run_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> dict:
    """Train, select, evaluate and write one run folder; return its summary."""
    run_dir = Path(run_dir)
    if (run_dir / DONE).exists() and resume:
        return json.loads((run_dir / "summary.json").read_text())
    device = pick_device(cfg.train.device)
    ddp = init_from_env(device.type)
    if ddp.enabled and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
    if ddp.main:
        preflight(run_dir, resume=resume, overwrite=overwrite)
    ddp.barrier()
    if resume:  # the run's own saved config wins, so a resumed run is the same run
        saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
        cfg = from_dict(saved["config"])
    t = cfg.train
    threads = set_threads(t.threads, jobs * ddp.world)
    amp_dtype = autocast_dtype(device, t.amp)
    # fp16 gradients underflow without loss scaling; bf16 and float32 need none (scaler disabled)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    autocast = functools.partial(torch.autocast, device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    seed_everything(t.seed + ddp.rank)  # ranks draw different augmentations
    progress = progress and ddp.main
    if not ddp.main:
        def log(_message: str) -> None:  # only rank 0 talks
            pass
    if not resume:  # a resumed run keeps its saved, already fitted config
        cfg = fit_bandwidth(cfg, split.train, log)
    if ddp.main:
        save_config(cfg, run_dir / "config.yaml")

    data = load_split_audio(cfg, split, progress=progress, log=log)
    untrained = sorted(set(manifest.classes) - {it.class_name for it in data["train"].items})
    if untrained:
        log(f"warning: no training clips for class(es) {', '.join(untrained)} in this split; "
            f"the model cannot learn them (check the labels and folds with `soundformer data info`)")
    window = window_samples(cfg)
    model = build_model(cfg, len(manifest.classes))
    check_disk_space(run_dir, model)
    fit_normalisation(model, data["train"], window, cfg.audio.short_policy)
    place_model(model, device)
    optimizer = make_optimizer(cfg, model)
    ema = None
    if t.ema:
        from torch.optim.swa_utils import AveragedModel

        ema = AveragedModel(model, multi_avg_fn=warmup_ema_update(t.ema), use_buffers=True)

    train_set = WindowDataset(
        data["train"].audio, data["train"].labels.tolist(), window=window,
        windows_per_clip=t.windows_per_clip, random_crop=cfg.augment.random_crop,
        short_policy=cfg.audio.short_policy,
        crop=loader_length(cfg),
        min_energy=cfg.augment.crop_min_energy,
    )
    # drop a ragged last batch of one example: BatchNorm cannot train on a single example
    sampler = None
    if ddp.enabled:  # each rank gets 1/world of every epoch; the global batch stays batch_size
        sampler = DistributedSampler(train_set, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=t.seed)
    per_rank_batch = max(1, t.batch_size // ddp.world)
    loader = DataLoader(train_set, batch_size=per_rank_batch, shuffle=sampler is None, sampler=sampler,
                        drop_last=len(train_set) // ddp.world % per_rank_batch == 1)
    step_module: torch.nn.Module = TrainStep(model, cfg)
    if ddp.enabled:
        step_module = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * t.epochs
    eval_hop = max(1, int(window * t.eval_hop))
    n_classes = len(manifest.classes)
    n_members = len(model.members())
    trainable, frozen = count_parameters(model)

    tracker = Tracker(run_dir, t.tracker if ddp.main else "local", cfg.to_dict(), name=f"{cfg.name}/{run_dir.name}",
                      enabled=ddp.main)
    start_epoch, best, history, elapsed = 1, {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf}, [], 0.0
    if resume:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None and "ema" in saved:
            ema.load_state_dict(saved["ema"])
        set_rng_state(saved["rng"])
        start_epoch = saved["epoch"] + 1
        best, history, elapsed = saved["best"], saved["history"], saved["train_time_s"]
        best_path = run_dir / "checkpoints" / "best.pt"
        if best_path.exists():  # with train.checkpoint_every > 1, best.pt may be newer than last.pt
            newer = checkpoint.load(best_path)["best"]
            if newer["epoch"] > best["epoch"]:
                best = newer
        tracker.truncate(saved["epoch"])
        log(f"resuming {run_dir} at epoch {start_epoch}")

    def make_checkpoint(epoch: int, weights: dict) -> dict:
        return {
            "format_version": checkpoint.FORMAT_VERSION, "model": weights, "config": cfg.to_dict(),
            "classes": list(manifest.classes), "epoch": epoch, "best": best, "history": history,
            "train_time_s": elapsed, "window_samples": window,
        }

    stale = 0
    epoch_bar = None
    if progress:
        from tqdm.auto import tqdm

        epoch_bar = tqdm(total=t.epochs, initial=start_epoch - 1, desc=f"{cfg.name} {run_dir.name}",
                         unit="epoch", dynamic_ncols=True)
    interrupted = False
    try:
        for epoch in range(start_epoch, t.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            if sampler is not None:
                sampler.set_epoch(epoch)
            loss_sum = correct = seen = 0.0
            wait_s = 0.0
            tw = time.perf_counter()
            for step, (wav, y) in enumerate(loader):
                wait_s += time.perf_counter() - tw
                global_step = (epoch - 1) * steps_per_epoch + step
                for group in optimizer.param_groups:
                    group["lr"] = t.lr * lr_factor(cfg, global_step, total_steps)
                wav, y = wav.to(device, non_blocking=True), y.to(device)
                labels = F.one_hot(y, n_classes).float()
                if t.label_smoothing:
                    labels = labels * (1 - t.label_smoothing) + t.label_smoothing / n_classes
                batch_rng = rng_state() if t.sam_rho else None  # SAM replays this batch's augmentations
                with autocast():
                    loss, logits, target = step_module(wav, labels)
                if not torch.isfinite(loss):
                    raise SoundformerError(
                        f"training diverged at epoch {epoch} (loss is {loss.item()}); lower train.lr "
                        f"(now {t.lr}) or set train.grad_clip"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if t.sam_rho:  # the gradient at the worst nearby weights (sam.py)
                    moved = sam.ascend(model.members(), t.sam_rho)
                    optimizer.zero_grad(set_to_none=True)
                    set_rng_state(batch_rng)
                    with sam.frozen_batchnorm_stats(model), autocast():
                        perturbed_loss = step_module(wav, labels)[0]
                    scaler.scale(perturbed_loss).backward()
                    sam.descend(moved)
                if t.grad_clip:
                    scaler.unscale_(optimizer)
                    for member in model.members():  # per member: as if each trained alone
                        torch.nn.utils.clip_grad_norm_(member.parameters(), t.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(model)
                n = len(y)
                loss_sum += loss.item() / n_members * n  # the mean over an ensemble's members
                correct += (logits.argmax(-1) == target.argmax(-1)).sum().item()
                seen += n
                tw = time.perf_counter()
            train_s = time.perf_counter() - t0
            loss_sum, correct, seen = ddp.sum(loss_sum, correct, seen)
            eval_model = ema.module if ema is not None else model
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": loss_sum / seen, "train_acc": correct / seen}
            if data["val"].items:
                probs = predict_clips(eval_model, data["val"].audio, window=window, hop=eval_hop,
                                      device=device, short_policy=cfg.audio.short_policy)
                row["val_loss"] = nll(data["val"].labels, probs)
                row["val_acc"] = accuracy(data["val"].labels, probs)
            elapsed += time.perf_counter() - t0
            row["epoch_time_s"] = time.perf_counter() - t0
            row["data_wait_frac"] = wait_s / max(train_s, 1e-9)
            history.append(row)
            tracker.log(row)  # a no-op on ranks other than 0
            improved = "val_acc" in row and (
                row["val_acc"] > best["val_acc"]
                or (row["val_acc"] == best["val_acc"] and row["val_loss"] < best["val_loss"])
            )
            if improved:
                best = {"epoch": epoch, "val_acc": row["val_acc"], "val_loss": row["val_loss"]}
                stale = 0
                if ddp.main:
                    weights = {k: v.detach().cpu() for k, v in eval_model.state_dict().items()}
                    checkpoint.save_atomic(make_checkpoint(epoch, weights), run_dir / "checkpoints" / "best.pt")
            else:
                stale += 1
            patience_out = bool(t.early_stopping and stale >= t.early_stopping)
            time_out = False
            if t.max_minutes and epoch < t.epochs:  # every rank stops at the same epoch
                time_out = ddp.sum(float(elapsed >= 60 * t.max_minutes))[0] > 0
            stopping = patience_out or time_out
            # last.pt holds the optimiser state too (3x the weights): on a large model written
            # every epoch it can cost more than the epoch, so it may be thinned out
            if ddp.main and (epoch % t.checkpoint_every == 0 or epoch == t.epochs or stopping):
                state = make_checkpoint(epoch, {k: v.detach().cpu() for k, v in model.state_dict().items()})
                state.update(optimizer=optimizer.state_dict(), rng=rng_state())
                if ema is not None:
                    state["ema"] = ema.state_dict()
                checkpoint.save_atomic(state, run_dir / "checkpoints" / "last.pt")
            ddp.barrier()
            if epoch_bar is not None:
                epoch_bar.update(1)
                shown = {"loss": f"{row['train_loss']:.3f}", "acc": f"{row['train_acc']:.3f}"}
                if "val_acc" in row:
                    shown["val_acc"] = f"{row['val_acc']:.3f}"
                epoch_bar.set_postfix(**shown)
            elif epoch == t.epochs or epoch % 10 == 0 or epoch == start_epoch:
                val = f" val_acc {row['val_acc']:.3f}" if "val_acc" in row else ""
                log(f"{cfg.name} {run_dir.name} epoch {epoch}/{t.epochs} loss {row['train_loss']:.4f} "
                    f"acc {row['train_acc']:.3f}{val} ({row['epoch_time_s']:.1f}s)")
            if patience_out:
                log(f"early stopping at epoch {epoch}: no validation improvement for {stale} epochs")
                break
            if time_out:
                log(f"{cfg.name} {run_dir.name}: train.max_minutes={t.max_minutes} reached after epoch {epoch} "
                    f"of {t.epochs}; selecting and testing what it has")
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if epoch_bar is not None:
            epoch_bar.close()
        if interrupted:
            tracker.close()
    if interrupted:
        raise Interrupted(
            f"interrupted; the latest checkpoint (every train.checkpoint_every = {t.checkpoint_every} epochs) "
            f"is {run_dir}/checkpoints/last.pt. "
            f"Continue with --resume {run_dir}"
        )

    # ---- select, then (and only then) look at the test clips
    if not ddp.main:  # rank 0 evaluates and writes; the others are done
        tracker.close()
        ddp.barrier()
        shutdown(ddp)
        return {}
    final_model = ema.module if ema is not None else model
    selected = f"last (epoch {len(history)})"
    if t.select == "best" and (run_dir / "checkpoints" / "best.pt").exists():
        final_model.load_state_dict(checkpoint.load(run_dir / "checkpoints" / "best.pt")["model"])
        selected = f"best (epoch {best['epoch']})"
    # model.pt: the selected weights alone, what predict / export / report load
    checkpoint.save_atomic(
        make_checkpoint(len(history), {k: v.detach().cpu() for k, v in final_model.state_dict().items()}),
        run_dir / "checkpoints" / "model.pt",
    )
    summary = evaluate_run(cfg, manifest, data, final_model, device, window, eval_hop, run_dir)
    summary.update({
        "preset": cfg.name, "job": run_dir.name, "folds": split.names, "selected": selected,
        "best_epoch": best["epoch"], "epochs_run": len(history), "train_time_s": elapsed,
        "params_trainable": trainable, "params_non_trainable": frozen, "threads": threads,
        "device": str(device), "classes": list(manifest.classes),
        "mean_data_wait_frac": float(np.mean([h["data_wait_frac"] for h in history])) if history else 0.0,
    })
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    images = None
    if t.tracker != "local":  # the trackers also get the run's final figure
        from .report.figures import curves

        images = {"curves": curves({run_dir.name: history}, cfg.name, run_dir / "curves.png")}
    tracker.log_summary(summary, images)
    tracker.close()
    (run_dir / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    ddp.barrier()
    shutdown(ddp)
    return summary


def evaluate_run(cfg, manifest, data, model, device, window, hop, run_dir: Path) -> dict:
    """Clip-level predictions for every split -> predictions.npz + accuracies."""
    arrays: dict[str, np.ndarray] = {"classes": np.array(manifest.classes)}
    out: dict = {}
    for name in ("train", "val", "test"):
        clips = data[name]
        if not clips.items:
            continue
        t0 = time.perf_counter()
        probs = predict_clips(model, clips.audio, window=window, hop=hop, device=device,
                              short_policy=cfg.audio.short_policy, crops=cfg.train.eval_crops,
                              crop_length=crop_length(window, cfg.augment.crop_fraction))
        seconds = time.perf_counter() - t0
        arrays[f"{name}_probs"] = probs
        arrays[f"{name}_labels"] = clips.labels
        arrays[f"{name}_paths"] = np.array([str(it.path) for it in clips.items])
        out[f"{name}_acc"] = accuracy(clips.labels, probs)
        out[f"{name}_loss"] = nll(clips.labels, probs)
        out[f"{name}_n"] = len(clips.items)
        if name == "test":
            out["inference_ms_per_clip"] = 1000 * seconds / len(clips.items)
    np.savez(run_dir / "predictions.npz", **arrays)
    return out
