"""Configuration: dataclasses, YAML presets, ``--set key=value`` overrides and validation.

A preset is a YAML file in ``soundformer/presets``; it may name a ``base`` preset whose values
it overrides, and hold a ``protocols`` section of values that apply under one cross-validation
protocol only (``protocols: {report: {train: {epochs: 80}}}``). Precedence, lowest first: base
preset, preset, the preset's section for the protocol in use, ``--set`` overrides. The resolved
config (every field, after all of these) is saved with each run.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import SoundformerError

STEM_POOLS = ("avg", "max", "avgmax")  # model.stem_pool: the log-mel stems' pooling after each block


@dataclass
class DataConfig:
    path: str = ""  # data set folder or CSV manifest ("" = ESC-10 in the user cache)
    format: str = "auto"  # auto|esc50|esc10|folder|csv|urbansound8k
    subset: str = ""  # esc50 only: "esc10" keeps the ESC-10 classes
    k_folds: int = 5  # folds made for layouts that have none (folder, csv without fold)
    split_seed: int = 0  # seed of the folds made for folder/csv layouts
    skip_bad: bool = False  # train without unreadable files instead of refusing the data set
    allow_outside_root: bool = False  # may a CSV manifest name files outside its folder?


@dataclass
class AudioConfig:
    sample_rate: int = 16000  # every clip is resampled to this rate (Hz)
    window_seconds: float = 5.0  # model input length; longer clips are cut into windows
    short_policy: str = "pad"  # pad|loop: how a clip shorter than one window is filled
    cache: bool = True  # keep decoded + resampled audio on disk


@dataclass
class FeatureConfig:
    kind: str = "waveform"  # waveform|logmel
    n_fft: int = 1024  # STFT frame length in samples
    hop_length: int = 320  # STFT hop in samples
    n_mels: int = 64  # mel bands
    f_min: float = 0.0  # lowest mel frequency (Hz)
    f_max: float = 0.0  # 0 = sample_rate / 2
    # cap f_max at half the native sample rate that 90 % of the training clips reach: mel bands
    # above a clip's bandwidth hold only resampling residue (and a cue to the recording's rate)
    fit_bandwidth: bool = True
    compression: str = "log"  # log|pcen|log+pcen: log of the mel power, per-channel energy normalisation, or both as two channels
    # 0 = off; an odd frame count >= 3 (librosa.feature.delta's width): each compressed channel is
    # followed by its time derivative, a least-squares slope over that many frames
    delta_width: int = 0
    # PCEN (compression pcen / log+pcen, or the "pcen" member of model.ensemble): librosa.pcen's
    # parameters and defaults. The smoother's time constant sets which loudness changes count as
    # background (divided out) and which as events; gain is how much of that level is divided out
    pcen_time_constant: float = 0.4  # seconds
    pcen_gain: float = 0.98  # 0 (nothing divided out) .. 1
    pcen_bias: float = 2.0
    pcen_power: float = 0.5  # the root that compresses the normalised energy
    normalize: bool = True  # per-mel-bin mean/std from the training data
    # the modulation model (model.name=modulation_linear, or "modulation" in model.ensemble)
    modulation_bands: int = 16  # mel bands whose loudness envelopes are analysed
    modulation_bins: int = 16  # log-spaced bin edges from 0.5 Hz to the frame rate's Nyquist frequency
    modulation_window: float = 0.032  # STFT window of those bands (seconds)
    modulation_hop: float = 0.005  # and its hop (seconds): the envelopes' sampling period


@dataclass
class ModelConfig:
    name: str = "logmel_transformer"  # seed_cnn|seed_transformer|logmel_cnn|logmel_transformer|modulation_linear
    # convolutional front-end (the seed CNN's channels, or the log-mel stem's)
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # conv channels per stage
    # transformer encoder
    dim: int = 128  # token (model) dimension
    depth: int = 4  # encoder blocks
    heads: int = 4  # attention heads; must divide dim
    mlp_dim: int = 256  # hidden size of each block's feed-forward layer
    dropout: float = 0.1  # after attention, in the feed-forward layer, on the embeddings
    attn_dropout: float = 0.0  # on the attention weights
    drop_path: float = 0.1  # stochastic depth of the last block (0 for the first, linear between)
    norm_first: bool = True  # pre-norm (True) or post-norm as in the original transformer
    positions: str = "sinusoidal"  # sinusoidal|learned
    readout: str = "cls"  # transformers' clip embedding: the CLS token's output (cls) | the mean of every output token (mean)
    attention: str = "manual"  # manual (hand-written) | fused (scaled_dot_product_attention)
    token_layout: str = "time"  # seed transformer: channels (the report's) | time
    pool_time: list[int] = field(default_factory=lambda: [2])  # log-mel transformer stem: time pooling per conv block, one value for all or one per block (e.g. [4, 2, 2] for a finer hop)
    stem_double: bool = False  # log-mel stems: two convolutions per block instead of one
    stem_stride: int = 1  # log-mel stems: time stride of the first convolution (2 reads a 10-ms hop at the cost of a 20-ms one)
    stem_kernel_time: int = 3  # log-mel stems: the first convolution's length in frames (odd; 3 = 60 ms at a 20-ms hop, 9 = 180 ms: long enough to tune to a 10-20-Hz beat such as a rotor's)
    stem_pool: str = "avg"  # log-mel stems: pooling after each block, avg | max | avgmax (their sum: a texture's level and a short event's peak)
    member_stem_pools: list[str] = field(default_factory=list)  # ensembles: one stem_pool per member of model.ensemble, in its order (e.g. [avg, avgmax]); [] = every member uses stem_pool
    max_tokens: int = 1024  # learned positions: table size
    ensemble: list[str] = field(default_factory=list)  # log-mel models: e.g. [log, pcen] = one complete model per compression (replaces features.compression), trained side by side, probabilities averaged; "modulation" adds a modulation_linear member; [] = one model


@dataclass
class AugmentConfig:
    random_crop: bool = True  # random window position in training (a time shift)
    crop_fraction: float = 1.0  # log-mel models: train on random crops of this share of the window (0.6 = 3 s of 5); evaluation sees whole windows; 1 = whole windows
    crop_min_energy: float = 0.0  # a training crop must hold at least this share of the energy of its clip's loudest crop (no crops of padding silence alone under an event's label; with crop_spread, of the loader's longest crop); 0 = any start
    member_crops: bool = False  # ensembles with crop_fraction < 1: each member trains on its own random crop of the batch's windows (the loader gives whole windows, each member cuts its own), so the members hear different parts of a clip in a step; false = one crop for every member
    crop_spread: float = 0.0  # each training batch draws its crops' share uniformly from crop_fraction +- crop_spread (same mean work per step; 0.6 +- 0.3 = 1.5-4.5 s of 5); 0 = every crop is crop_fraction
    gain_db: float = 0.0  # random gain in +-gain_db
    time_shift: float = 0.0  # random circular shift of each window, up to this fraction of it
    speed: float = 0.0  # random playback speed in 1 +- speed (tempo and pitch together); 0 = off
    eq_db: float = 0.0  # random equaliser (log-mel models): smooth gain curve across mel bins, +-eq_db; 0 = off
    eq_points: int = 4  # knots of that curve, evenly spaced over the mel bins
    # band-limit this share of training examples, as a recording chain with less bandwidth would:
    # a low-pass whose cutoff is uniform on the mel scale between lowpass_min_hz and the top of the
    # band (features.f_max, or half the sample rate); 0 = off. A model that has heard every class
    # without its top octaves cannot tell classes apart by how much treble they have alone
    lowpass_prob: float = 0.0
    lowpass_min_hz: float = 1000.0  # lowest cutoff of that low-pass (Hz)
    lowpass_db: float = 40.0  # its attenuation, reached one octave above the cutoff (dB)
    mixup_alpha: float = 0.0  # 0 = off
    mixup_domain: str = "features"  # features (after SpecAugment, per model) | waveform (sounds superposed, loudness-aware)
    cutmix_prob: float = 0.0  # log-mel models: share of training batches (drawn per member) mixed by time CutMix instead of mixup: a random span of frames (0-100 % of them) replaced by a partner's same frames, targets weighted by the span's share; 0 = off
    member_mixup_domains: list[str] = field(default_factory=list)  # ensembles: one mixup_domain per member of model.ensemble, in its order (e.g. [waveform, features]); [] = every member uses mixup_domain
    freq_masks: int = 0  # SpecAugment (log-mel models only)
    freq_mask_width: int = 8  # widest frequency mask, in mel bins
    time_masks: int = 0  # SpecAugment time masks
    time_mask_width: int = 20  # widest time mask, in frames


@dataclass
class TrainConfig:
    epochs: int = 100  # passes over the training clips
    batch_size: int = 32  # examples per step (per process under torchrun)
    optimizer: str = "adam"  # adam|adamw
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # decoupled (AdamW) or L2 (Adam)
    schedule: str = "constant"  # constant|cosine|onecycle
    warmup_epochs: float = 0.0  # linear warm-up before the schedule
    label_smoothing: float = 0.0  # share of each target spread over the other classes
    loss: str = "ce"  # ce: softmax cross-entropy | bce: binary cross-entropy per class on the same (mixed, smoothed) targets, as DeiT III trains with mixup; predictions are still read through softmax
    grad_clip: float = 0.0  # 0 = off
    early_stopping: int = 0  # patience in epochs; 0 = off
    checkpoint_every: int = 1  # save the resumable checkpoints/last.pt every N epochs (and at the end)
    max_minutes: float = 0.0  # stop after this much training time (then select and test as usual); 0 = no limit
    select: str = "best"  # which checkpoint is evaluated: best (by validation) | last
    windows_per_clip: int = 1  # training samples drawn from each clip per epoch
    val_fraction: float = 0.1  # standard protocol: validation share taken from training folds (0 = none)
    eval_hop: float = 1.0  # evaluation window hop, as a fraction of the window
    eval_crops: int = 0  # evaluation: average each window 50/50 with the mean of this many crops of augment.crop_fraction of it, evenly spaced (test-time counterpart of crop training); 0 = whole windows only; no effect when crop_fraction is 1
    seed: int = 0  # initialisation, augmentation and shuffling
    device: str = "auto"  # auto|cpu|cuda
    amp: str = "auto"  # auto|bf16|fp16|off (autocast on GPU only)
    threads: int = 0  # CPU threads; 0 = the free cores
    mutual_learning: float = 0.0  # ensembles: weight of each member's KL to the others' mean prediction (deep mutual learning; members then share one mixup draw); 0 = off
    sam_rho: float = 0.0  # sharpness-aware minimisation: each step also takes the gradient at the weights moved this far along the normalised gradient (per member), and steps with it; about twice the cost of a step; 0 = off (e.g. 0.05)
    ema: float = 0.0  # weight EMA decay, reached after a ramp min(ema, (1+n)/(10+n)) over n steps; 0 = off
    tracker: str = "local"  # local|tensorboard|wandb


@dataclass
class Config:
    name: str = "custom"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def band_top(cfg: Config) -> float:
    """The highest frequency the mel bands reach (Hz): ``features.f_max``, or half the sample rate
    where it is 0."""
    return cfg.features.f_max or cfg.audio.sample_rate / 2


PROTOCOLS = ("report", "standard")  # cross-validation protocols (cv.plan_jobs)
MODULATION_MEMBER = "modulation"  # the model.ensemble entry for a modulation_linear member

CHOICES: dict[str, tuple[str, ...]] = {
    "data.format": ("auto", "esc50", "esc10", "folder", "csv", "urbansound8k"),
    "data.subset": ("", "esc10"),
    "audio.short_policy": ("pad", "loop"),
    "augment.mixup_domain": ("features", "waveform"),
    "features.kind": ("waveform", "logmel"),
    "features.compression": ("log", "pcen", "log+pcen"),
    "model.name": ("seed_cnn", "seed_transformer", "logmel_cnn", "logmel_transformer", "modulation_linear"),
    "model.positions": ("sinusoidal", "learned"),
    "model.readout": ("cls", "mean"),
    "model.attention": ("manual", "fused"),
    "model.token_layout": ("channels", "time"),
    "train.optimizer": ("adam", "adamw"),
    "train.schedule": ("constant", "cosine", "onecycle"),
    "train.loss": ("ce", "bce"),
    "train.select": ("best", "last"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.amp": ("auto", "bf16", "fp16", "off"),
    "train.tracker": ("local", "tensorboard", "wandb"),
}


# --------------------------------------------------------------------------- presets


def preset_names() -> list[str]:
    folder = resources.files("soundformer") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _preset_dict(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in _seen:
        raise SoundformerError(f"preset '{name}' extends itself through {' -> '.join(_seen)}")
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        names = preset_names()
        if name not in names:
            raise SoundformerError(
                f"unknown preset '{name}'. Choose one of: {', '.join(names)} (or a path to a .yaml file)"
            )
        text = (resources.files("soundformer") / "presets" / f"{name}.yaml").read_text()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SoundformerError(f"preset '{name}' is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SoundformerError(f"preset '{name}' must be a YAML mapping")
    base = raw.pop("base", None)
    if base:
        merged = _preset_dict(base, _seen + (name,))
        merged.pop("description", None)
        _deep_update(merged, raw)
        raw = merged
    raw["name"] = path.stem if path.suffix in (".yaml", ".yml") else name
    return raw


def _deep_update(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = value


def _protocol_sections(raw: dict[str, Any], preset: str) -> dict[str, dict[str, Any]]:
    """Pop the preset's ``protocols`` section and check it: a mapping from protocol names to
    partial configs, each of which must resolve to a valid config (a typo in a section for a
    protocol not in use is still reported)."""
    sections = raw.pop("protocols", None) or {}
    if not isinstance(sections, dict):
        raise SoundformerError(f"preset '{preset}': 'protocols' must map protocol names ({', '.join(PROTOCOLS)}) "
                               f"to settings, e.g. protocols: {{report: {{train: {{epochs: 80}}}}}}")
    for protocol, section in sections.items():
        if protocol not in PROTOCOLS:
            raise SoundformerError(f"preset '{preset}': unknown protocol '{protocol}' under 'protocols'; "
                                   f"choose one of: {', '.join(PROTOCOLS)}")
        if not isinstance(section, dict):
            raise SoundformerError(f"preset '{preset}': protocols.{protocol} must be a mapping of settings, "
                                   f"e.g. {{train: {{epochs: 80}}}}")
        merged = copy.deepcopy(raw)
        _deep_update(merged, copy.deepcopy(section))
        try:
            validate(from_dict(merged))
        except SoundformerError as exc:
            raise SoundformerError(f"preset '{preset}', protocols.{protocol}: {exc}") from None
    return sections


def _protocol_sections_left(preset: str, overrides: list[str] | None) -> dict[str, dict[str, Any]]:
    """The preset's protocol sections without the keys that ``overrides`` (``--set`` items) set,
    since those win; sections left empty are dropped."""
    overridden = {item.split("=", 1)[0].strip() for item in overrides or []}
    left: dict[str, dict[str, Any]] = {}
    for protocol, section in _protocol_sections(_preset_dict(preset), preset).items():
        kept = {}
        for key, value in section.items():
            if isinstance(value, dict):
                value = {sub: v for sub, v in value.items() if f"{key}.{sub}" not in overridden}
                if value:
                    kept[key] = value
            elif key not in overridden:
                kept[key] = value
        if kept:
            left[protocol] = kept
    return left


def protocol_settings(preset: str, overrides: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The settings a preset changes under each protocol, as ``{protocol: {"section.key": value}}``,
    leaving out the keys that ``overrides`` set."""
    flat: dict[str, dict[str, Any]] = {}
    for protocol, section in _protocol_sections_left(preset, overrides).items():
        flat[protocol] = {}
        for key, value in section.items():
            if isinstance(value, dict):
                flat[protocol].update({f"{key}.{sub}": v for sub, v in value.items()})
            else:
                flat[protocol][key] = value
    return flat


def load_config(
    preset: str = "logmel-transformer", overrides: list[str] | None = None, *, protocol: str | None = None
) -> Config:
    """Preset (+ its section for ``protocol``, if it has one) + ``key=value`` overrides -> validated
    Config. ``protocol=None`` (single runs, ``presets``, ``summary``) uses the preset's own values."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise SoundformerError(f"unknown protocol '{protocol}'; choose one of: {', '.join(PROTOCOLS)}")
    raw = _preset_dict(preset)
    name = raw.get("name", preset)
    sections = _protocol_sections(raw, name)
    if protocol in sections:
        _deep_update(raw, copy.deepcopy(sections[protocol]))
    cfg = from_dict(raw)
    cfg.name = name
    for item in overrides or []:
        apply_override(cfg, item)
    validate(cfg)
    return cfg


def from_dict(raw: dict[str, Any]) -> Config:
    cfg = Config()
    for key, value in raw.items():
        _set_path(cfg, key, value, source="config")
    return cfg


def _set_path(obj: Any, key: str, value: Any, *, source: str) -> None:
    if isinstance(value, dict) and dataclasses.is_dataclass(getattr(obj, key, None)):
        section = getattr(obj, key)
        for sub_key, sub_value in value.items():
            _set_field(section, sub_key, sub_value, prefix=key, source=source)
        return
    _set_field(obj, key, value, prefix="", source=source)


def _set_field(obj: Any, key: str, value: Any, *, prefix: str, source: str) -> None:
    full = f"{prefix}.{key}" if prefix else key
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if key not in fields:
        known = ", ".join(f"{prefix + '.' if prefix else ''}{k}" for k in fields)
        raise SoundformerError(f"unknown {source} key '{full}'. Known keys: {known}")
    hint = typing.get_type_hints(type(obj))[key]
    setattr(obj, key, _coerce(value, hint, full))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        raise SoundformerError(f"'{key}' is a section; set one of its keys, e.g. {key}.<name>=...")
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str) and value.strip():  # log,pcen or log: the brackets forgotten
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, (list, tuple)):
            raise SoundformerError(f"'{key}' must be a list in brackets, e.g. {key}=[a,b], got {value!r}")
        return [_coerce(v, item_type, key) for v in value]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(value, args[0], key) if value is not None else None
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        pass
    raise SoundformerError(f"'{key}' must be {getattr(hint, '__name__', hint)}, got {value!r}")


def apply_override(cfg: Config, item: str) -> None:
    """Apply one ``section.key=value`` override (value parsed as YAML)."""
    if "=" not in item:
        raise SoundformerError(f"--set expects key=value (e.g. train.lr=3e-4), got '{item}'")
    key, text = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    if len(parts) == 1:
        _set_field(cfg, key, value, prefix="", source="--set")
    elif len(parts) == 2:
        section = getattr(cfg, parts[0], None)
        if not dataclasses.is_dataclass(section):
            sections = ", ".join(f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name)))
            raise SoundformerError(f"unknown --set section '{parts[0]}'. Sections: {sections}")
        _set_field(section, parts[1], value, prefix=parts[0], source="--set")
    else:
        raise SoundformerError(f"--set key '{key}' must look like section.key (e.g. train.lr)")


# --------------------------------------------------------------------------- validation


def _check_modulation(f: FeatureConfig, a: AudioConfig) -> None:
    """The modulation model's settings (features.modulation_*)."""
    if f.modulation_bands < 1 or f.modulation_bins < 2:
        raise SoundformerError(f"features.modulation_bands must be >= 1 and features.modulation_bins >= 2 "
                               f"(bin edges), got {f.modulation_bands} and {f.modulation_bins}")
    if not 1 / a.sample_rate <= f.modulation_hop <= 0.5:
        raise SoundformerError(f"features.modulation_hop={f.modulation_hop} s must be between one sample "
                               f"(1/{a.sample_rate} s) and 0.5 s (its Nyquist frequency must exceed 0.5 Hz)")
    if not f.modulation_hop <= f.modulation_window <= a.window_seconds:
        raise SoundformerError(f"features.modulation_window={f.modulation_window} s must be at least "
                               f"features.modulation_hop ({f.modulation_hop} s) and at most audio.window_seconds "
                               f"({a.window_seconds} s)")
    if a.window_seconds < 4 * f.modulation_hop:
        raise SoundformerError(f"audio.window_seconds={a.window_seconds} holds too few frames of "
                               f"features.modulation_hop={f.modulation_hop} s for a modulation spectrum")


def validate(cfg: Config) -> None:
    """Raise SoundformerError naming the first impossible setting."""
    for dotted, allowed in CHOICES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            shown = ", ".join(repr(a) if a == "" else a for a in allowed)
            raise SoundformerError(f"{dotted}={value!r} is not valid; choose one of: {shown}")

    def positive(key: str, value: float, *, allow_zero: bool = False) -> None:
        if value < 0 or (value == 0 and not allow_zero):
            need = ">= 0" if allow_zero else "> 0"
            raise SoundformerError(f"{key} must be {need}, got {value}")

    a, f, m, g, t = cfg.audio, cfg.features, cfg.model, cfg.augment, cfg.train

    def one_per_member(key: str, values: list[str], allowed: tuple[str, ...], example: str) -> None:
        """An ensemble's per-member list: one allowed entry per member of model.ensemble, in its order."""
        if len(values) != len(m.ensemble) or any(v not in allowed for v in values):
            raise SoundformerError(f"{key}=[{', '.join(values)}] needs one of {', '.join(allowed)} per member of "
                                   f"model.ensemble=[{', '.join(m.ensemble)}], in its order (e.g. {example}), or []")

    positive("audio.sample_rate", a.sample_rate)
    positive("audio.window_seconds", a.window_seconds)
    positive("data.k_folds", cfg.data.k_folds)
    if cfg.data.k_folds < 2:
        raise SoundformerError(f"data.k_folds must be at least 2, got {cfg.data.k_folds}")
    for key in ("n_fft", "hop_length", "n_mels"):
        positive(f"features.{key}", getattr(f, key))
    positive("features.f_min", f.f_min, allow_zero=True)
    if f.delta_width and (f.delta_width < 3 or f.delta_width % 2 == 0):
        raise SoundformerError(f"features.delta_width must be 0 (off) or an odd number of frames >= 3 "
                               f"(e.g. 9), got {f.delta_width}")
    positive("features.f_max", f.f_max, allow_zero=True)
    positive("features.pcen_time_constant", f.pcen_time_constant)
    positive("features.pcen_bias", f.pcen_bias)
    positive("features.pcen_power", f.pcen_power)
    if not 0 <= f.pcen_gain <= 1:
        raise SoundformerError(f"features.pcen_gain must be between 0 (no level divided out) and 1 (all of it), "
                               f"got {f.pcen_gain}; librosa's default is 0.98")
    if f.f_max and f.f_max > a.sample_rate / 2:
        raise SoundformerError(
            f"features.f_max={f.f_max} is above the Nyquist frequency {a.sample_rate / 2} "
            f"of audio.sample_rate={a.sample_rate}; lower it or set 0 (= Nyquist)"
        )
    if not m.channels or any(c <= 0 for c in m.channels):
        raise SoundformerError(f"model.channels must be positive sizes, got {m.channels}")
    for key in ("dim", "depth", "heads", "mlp_dim", "max_tokens", "stem_stride"):
        positive(f"model.{key}", getattr(m, key))
    if m.stem_kernel_time < 1 or m.stem_kernel_time % 2 == 0:
        raise SoundformerError(f"model.stem_kernel_time is the first stem convolution's length in frames, an odd "
                               f"number >= 1 (so the map keeps its length; 3 = the default), got {m.stem_kernel_time}")
    if m.stem_pool not in STEM_POOLS:
        raise SoundformerError(f"model.stem_pool must be {', '.join(STEM_POOLS[:-1])} or {STEM_POOLS[-1]}, "
                               f"got {m.stem_pool!r}")
    if not m.pool_time or any(p < 1 for p in m.pool_time) or len(m.pool_time) not in (1, len(m.channels)):
        raise SoundformerError(
            f"model.pool_time must be one pooling factor >= 1 for every stem block, or one per block "
            f"({len(m.channels)} for model.channels={m.channels}), got {m.pool_time}"
        )
    if m.dim % m.heads:
        raise SoundformerError(
            f"model.dim={m.dim} is not divisible by model.heads={m.heads}; "
            f"pick heads that divide the dim (e.g. {', '.join(str(h) for h in (1, 2, 4, 8) if m.dim % h == 0)})"
        )
    for key in ("dropout", "attn_dropout", "drop_path"):
        value = getattr(m, key)
        if not 0 <= value < 1:
            raise SoundformerError(f"model.{key} must be in [0, 1), got {value}")
    needs_logmel = m.name.startswith("logmel") or m.name == "modulation_linear"
    if needs_logmel and f.kind != "logmel":
        raise SoundformerError(f"model.name={m.name} needs features.kind=logmel")
    if not needs_logmel and f.kind != "waveform":
        raise SoundformerError(f"model.name={m.name} needs features.kind=waveform")
    positive("augment.gain_db", g.gain_db, allow_zero=True)
    if not 0 <= g.time_shift <= 1:
        raise SoundformerError(f"augment.time_shift must be a fraction of the window in [0, 1], got {g.time_shift}")
    if not 0 < g.crop_fraction <= 1:
        raise SoundformerError(f"augment.crop_fraction is the share of the window each training crop keeps, "
                               f"in (0, 1] (1 = whole windows), got {g.crop_fraction:g}")
    if g.crop_spread < 0 or (g.crop_spread and not (g.crop_fraction - g.crop_spread > 0 and g.crop_fraction + g.crop_spread <= 1 + 1e-9)):  # 1e-9: 0.7 + 0.3 may round above 1
        raise SoundformerError(f"augment.crop_spread: each batch's crop share is drawn from crop_fraction +- crop_spread, "
                               f"which must stay above 0 and at most 1 (0 = no spread); with crop_fraction="
                               f"{g.crop_fraction:g}, crop_spread={g.crop_spread:g} gives "
                               f"{g.crop_fraction - g.crop_spread:g} to {g.crop_fraction + g.crop_spread:g}")
    if not 0 <= g.crop_min_energy < 1:
        raise SoundformerError(f"augment.crop_min_energy is the least share of the loudest crop's energy a training "
                               f"crop must hold, in [0, 1) (0 = any crop), got {g.crop_min_energy:g}")
    if g.crop_min_energy and (g.crop_fraction == 1 or not g.random_crop):
        raise SoundformerError(f"augment.crop_min_energy chooses where random training crops start, so it needs "
                               f"augment.crop_fraction < 1 and augment.random_crop=true (got crop_fraction="
                               f"{g.crop_fraction:g}, random_crop={str(g.random_crop).lower()}); or set crop_min_energy=0")
    if g.member_crops and (len(m.ensemble) < 2 or g.crop_fraction == 1 or not g.random_crop or g.crop_min_energy):
        raise SoundformerError(f"augment.member_crops gives each member of an ensemble its own random training crop, so it "
                               f"needs two or more members in model.ensemble, augment.crop_fraction < 1, "
                               f"augment.random_crop=true and augment.crop_min_energy=0 (got ensemble="
                               f"[{', '.join(m.ensemble)}], crop_fraction={g.crop_fraction:g}, random_crop="
                               f"{str(g.random_crop).lower()}, crop_min_energy={g.crop_min_energy:g}); "
                               f"or set augment.member_crops=false")
    if g.crop_fraction < 1 and not needs_logmel:
        raise SoundformerError(f"augment.crop_fraction needs a model that takes any input length (the log-mel "
                               f"models); model.name={m.name} takes whole windows only: set augment.crop_fraction=1")
    if not 0 <= g.speed < 1:
        raise SoundformerError(f"augment.speed is the largest relative speed change, in [0, 1) (0.1 = +-10 %), got {g.speed}")
    positive("augment.eq_db", g.eq_db, allow_zero=True)
    if not 0 <= g.lowpass_prob <= 1:
        raise SoundformerError(f"augment.lowpass_prob is the share of training examples band-limited, in [0, 1] "
                               f"(0 = off), got {g.lowpass_prob:g}")
    if g.lowpass_prob:
        top = band_top(cfg)
        if not 0 < g.lowpass_min_hz < top:
            raise SoundformerError(f"augment.lowpass_min_hz is the lowest cutoff of the random low-pass and must lie "
                                   f"in (0, {top:g}) Hz (the top of the band), got {g.lowpass_min_hz:g}")
        positive("augment.lowpass_db", g.lowpass_db)
    if m.ensemble:
        listed = f"[{', '.join(m.ensemble)}]"
        if not needs_logmel:
            raise SoundformerError(f"model.ensemble lists front-end compressions, which only log-mel models have; "
                                   f"set model.ensemble=[] for model.name={m.name}")
        kinds = (*CHOICES["features.compression"], MODULATION_MEMBER)
        bad = [c for c in m.ensemble if c not in kinds]
        if bad or len(m.ensemble) < 2 or len(set(m.ensemble)) < len(m.ensemble):
            raise SoundformerError(f"model.ensemble={listed} must list two or more different members from "
                                   f"{', '.join(kinds)} (e.g. [log, pcen]), or be []")
        if m.name == "modulation_linear":
            raise SoundformerError(f"model.ensemble={listed} builds members of model.name; set model.name to "
                                   f"logmel_transformer or logmel_cnn, and list {MODULATION_MEMBER} for a modulation member")
        if f.compression != "log":  # the default; anything else would be silently replaced
            raise SoundformerError(
                f"features.compression={f.compression} has no effect while model.ensemble={listed} names "
                f"each member's front-end: set model.ensemble=[] for one {f.compression} model, or list "
                f"{f.compression} in model.ensemble"
            )
    if m.member_stem_pools:
        one_per_member("model.member_stem_pools", m.member_stem_pools, STEM_POOLS, "[avg, avgmax]")
        listed = f"[{', '.join(m.member_stem_pools)}]"
        if m.stem_pool != "avg":  # the default; anything else would be silently replaced
            raise SoundformerError(f"model.stem_pool={m.stem_pool} has no effect while model.member_stem_pools={listed} "
                                   f"gives each member its pooling: set model.stem_pool=avg, or model.member_stem_pools=[]")
        for kind, pool in zip(m.ensemble, m.member_stem_pools):
            if kind == MODULATION_MEMBER and pool != "avg":
                raise SoundformerError(f"model.member_stem_pools={listed} gives the {MODULATION_MEMBER} member, which "
                                       f"has no stem, pooling {pool}: list avg for it")
    if m.name == "modulation_linear" or MODULATION_MEMBER in m.ensemble:
        _check_modulation(f, a)
    compressions = [c for c in m.ensemble if c != MODULATION_MEMBER] or [f.compression]
    if g.eq_db and f.delta_width:
        raise SoundformerError("augment.eq_db adds gains to one log-mel channel; it does not apply with "
                               "features.delta_width: set one of them to 0")
    if g.eq_db and any(c != "log" for c in compressions):
        raise SoundformerError(f"augment.eq_db adds gains in the log-mel domain; it does not apply to "
                               f"compression {', '.join(c for c in compressions if c != 'log')}: set augment.eq_db=0 "
                               f"or use log compression only")
    if g.eq_points < 2:
        raise SoundformerError(f"augment.eq_points must be >= 2 (a curve needs two ends), got {g.eq_points}")
    positive("augment.mixup_alpha", g.mixup_alpha, allow_zero=True)
    if not 0 <= g.cutmix_prob <= 1:
        raise SoundformerError(f"augment.cutmix_prob is the share of batches mixed by time CutMix, in [0, 1] "
                               f"(0 = off), got {g.cutmix_prob:g}")
    if g.cutmix_prob and not m.name.startswith("logmel"):
        raise SoundformerError(f"augment.cutmix_prob cuts spans of spectrogram frames, which only the log-mel models "
                               f"have; model.name={m.name}: set augment.cutmix_prob=0")
    if g.cutmix_prob and (g.mixup_domain != "features" or g.member_mixup_domains or t.mutual_learning):
        raise SoundformerError("augment.cutmix_prob mixes each member's own features, in place of mixup in the "
                               "features domain: set augment.mixup_domain=features, member_mixup_domains=[] and "
                               "train.mutual_learning=0, or augment.cutmix_prob=0")
    for key in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
        positive(f"augment.{key}", getattr(g, key), allow_zero=True)
    positive("train.epochs", t.epochs)
    positive("train.batch_size", t.batch_size)
    positive("train.lr", t.lr)
    positive("train.weight_decay", t.weight_decay, allow_zero=True)
    positive("train.warmup_epochs", t.warmup_epochs, allow_zero=True)
    positive("train.grad_clip", t.grad_clip, allow_zero=True)
    positive("train.early_stopping", t.early_stopping, allow_zero=True)
    positive("train.checkpoint_every", t.checkpoint_every)
    positive("train.max_minutes", t.max_minutes, allow_zero=True)
    positive("train.windows_per_clip", t.windows_per_clip)
    positive("train.eval_crops", t.eval_crops, allow_zero=True)
    positive("train.threads", t.threads, allow_zero=True)
    if not 0 <= t.label_smoothing < 1:
        raise SoundformerError(f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    if not 0 <= t.val_fraction < 1:
        raise SoundformerError(f"train.val_fraction must be in [0, 1), got {t.val_fraction}")
    if not 0 < t.eval_hop <= 1:
        raise SoundformerError(f"train.eval_hop must be in (0, 1], got {t.eval_hop}")
    if g.member_mixup_domains:
        one_per_member("augment.member_mixup_domains", g.member_mixup_domains, CHOICES["augment.mixup_domain"],
                       "[waveform, features]")
        if not g.mixup_alpha:
            raise SoundformerError("augment.member_mixup_domains says where each member mixes its examples, but "
                                   "mixup is off: set augment.mixup_alpha > 0 (e.g. 0.4) or member_mixup_domains=[]")
        if t.mutual_learning:
            raise SoundformerError("train.mutual_learning shares one mixup draw between the members, which "
                                   "augment.member_mixup_domains gives apart: set one of them to its default")
    if t.mutual_learning < 0:
        raise SoundformerError(f"train.mutual_learning is a loss weight, >= 0 (0 = off), got {t.mutual_learning}")
    if t.mutual_learning and len(cfg.model.ensemble) < 2:
        raise SoundformerError("train.mutual_learning makes the members of an ensemble learn from each other; "
                               "list two or more members in model.ensemble (e.g. model.ensemble=[log,pcen]) "
                               "or set train.mutual_learning=0")
    positive("train.sam_rho", t.sam_rho, allow_zero=True)
    if not 0 <= t.ema < 1:
        raise SoundformerError(f"train.ema must be in [0, 1), got {t.ema}")


def key_comments() -> dict[str, str]:
    """``section.key`` -> the comment written beside that field in this module (the docs of
    every setting live in one place: the dataclasses above)."""
    import inspect

    comments: dict[str, str] = {}
    for section, value in vars(Config()).items():
        if not dataclasses.is_dataclass(value):
            continue
        for line in inspect.getsource(type(value)).splitlines():
            head, _, comment = line.partition("  # ")
            key = head.strip().split(":", 1)[0]
            if comment and ":" in head and key.isidentifier():
                comments[f"{section}.{key}"] = comment.strip()
    return comments


def annotated_yaml(cfg: Config) -> str:
    """The resolved config as YAML, each setting followed by what it means."""
    comments = key_comments()
    lines = []
    for section, values in cfg.to_dict().items():
        if not isinstance(values, dict):
            lines.append(yaml.safe_dump({section: values}, width=10**6).strip())
            continue
        lines.append(f"{section}:")
        for key, value in values.items():
            text = yaml.safe_dump({key: value}, default_flow_style=True, width=10**6).strip()[1:-1]
            note = comments.get(f"{section}.{key}")
            lines.append(f"  {text}" + (f"  # {note}" if note else ""))
    return "\n".join(lines) + "\n"


def protocols_yaml(preset: str, overrides: list[str] | None = None) -> str:
    """The preset's ``protocols`` section as YAML (to follow ``annotated_yaml``, so the printout
    stays a complete preset), without the keys that ``overrides`` set: ``--set`` wins over it."""
    sections = _protocol_sections_left(preset, overrides)
    if not sections:
        return ""
    body = yaml.safe_dump({"protocols": sections}, default_flow_style=None, sort_keys=False, width=10**6)
    return f"# under one cross-validation protocol only (cv/sweep --protocol; --set wins over these):\n{body}"


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def read_config(path: Path) -> Config:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SoundformerError(f"cannot read config {path}: {exc}") from None
    cfg = from_dict(raw)
    validate(cfg)
    return cfg
