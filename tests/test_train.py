import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from soundformer import checkpoint
from soundformer.cli import main
from soundformer.config import load_config
from soundformer.cv import make_split, plan_jobs, run_cv
from soundformer.data.sources import load_manifest
from soundformer.errors import SoundformerError
from soundformer.train import lr_factor, make_optimizer, run_job

from .conftest import write_esc10

TINY = ["audio.window_seconds=0.5", "model.dim=32", "model.depth=1", "model.heads=2", "model.mlp_dim=32",
        "model.channels=[8,16]", "train.batch_size=4", "train.threads=1",
        "train.val_fraction=0.1"]  # the tests watch validation


def tiny_cfg(*extra, preset="logmel-transformer"):
    return load_config(preset, TINY + list(extra))


def metrics(run_dir: Path, drop=("epoch_time_s", "data_wait_frac")):
    with open(run_dir / "metrics.csv") as fh:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fh)]


def one_job(manifest, cfg, protocol="report"):
    job = plan_jobs(manifest, protocol)[0]
    return make_split(manifest, job, cfg)


def test_run_folder_is_complete_and_consistent(tiny_esc10, tmp_path):
    cfg = tiny_cfg("train.epochs=2")
    m = load_manifest(tiny_esc10)
    summary = run_job(cfg, m, one_job(m, cfg), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "summary.json", "predictions.npz", "done",
                 "checkpoints/last.pt", "checkpoints/best.pt", "checkpoints/model.pt"):
        assert (run / name).exists(), name
    rows = metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert summary["epochs_run"] == 2 and summary["test_n"] == 3 and summary["val_n"] == 3
    preds = np.load(run / "predictions.npz")
    assert summary["test_acc"] == pytest.approx((preds["test_probs"].argmax(1) == preds["test_labels"]).mean())
    assert json.loads((run / "summary.json").read_text()) == summary
    # the report protocol's first job validates on fold 1, tests on fold 5
    assert all("/1-" in p or "\\1-" in p for p in preds["val_paths"])
    assert all(Path(p).name.startswith("5-") for p in preds["test_paths"])


def test_same_seed_same_metrics(tiny_esc10, tmp_path):
    cfg = tiny_cfg("train.epochs=2", "augment.mixup_alpha=0.4", "augment.time_masks=1", "augment.gain_db=3",
                   "augment.speed=0.1")
    m = load_manifest(tiny_esc10)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "a", progress=False)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "b", progress=False)
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    cfg.train.seed = 1
    run_job(cfg, m, one_job(m, cfg), tmp_path / "c", progress=False)
    assert metrics(tmp_path / "a") != metrics(tmp_path / "c")


def test_test_fold_never_influences_training(tmp_path):
    """Replace every test-fold clip with loud noise: training and selection must not change."""
    a = write_esc10(tmp_path / "a")
    b = write_esc10(tmp_path / "b")
    rng = np.random.default_rng(0)
    for p in b.rglob("5-*.wav"):
        sf.write(p, rng.standard_normal(8000).astype(np.float32), 8000)
    cfg = tiny_cfg("train.epochs=3", "train.select=best", "train.val_fraction=0.1")
    for root, name in ((a, "ra"), (b, "rb")):
        m = load_manifest(root)
        for protocol in ("report", "standard"):
            job = [j for j in plan_jobs(m, protocol) if j.test_folds == [5]][0]
            split = make_split(m, job, cfg)
            assert not {it.fold for it in split.train + split.val} & {5}
            run_job(cfg, m, split, tmp_path / f"{name}-{protocol}", progress=False)
    for protocol in ("report", "standard"):
        ra, rb = tmp_path / f"ra-{protocol}", tmp_path / f"rb-{protocol}"
        assert metrics(ra) == metrics(rb)
        wa = checkpoint.load(ra / "checkpoints" / "model.pt")["model"]
        wb = checkpoint.load(rb / "checkpoints" / "model.pt")["model"]
        for k in wa:  # normalisation statistics included
            assert torch.equal(wa[k], wb[k]), k
        sa, sb = (json.loads((r / "summary.json").read_text()) for r in (ra, rb))
        assert sa["val_acc"] == sb["val_acc"] and sa["best_epoch"] == sb["best_epoch"]


def test_existing_run_is_never_overwritten(tiny_esc10, tmp_path, capsys):
    args = ["train", "--data", str(tiny_esc10), "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")]
    for kv in TINY:
        args += ["--set", kv]
    assert main(args) == 0
    before = (tmp_path / "r" / "metrics.csv").read_text()
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "r" / "metrics.csv").read_text() == before
    assert main(args + ["--overwrite"]) == 0


def _train_cmd(data, out, epochs, extra=()):
    cmd = [sys.executable, "-m", "soundformer", "train", "--data", str(data), "--epochs", str(epochs),
           "--quiet", "--out", str(out), *extra]
    for kv in TINY:
        cmd += ["--set", kv]
    return cmd


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    data = write_esc10(tmp_path / "d", per_fold=3)
    env = dict(os.environ, PYTHONHASHSEED="0")
    full = subprocess.run(_train_cmd(data, tmp_path / "full", 12), env=env, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(_train_cmd(data, tmp_path / "killed", 12), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for a few epochs, then kill -9 mid-run
        if (tmp_path / "killed" / "metrics.csv").exists() and len(metrics(tmp_path / "killed")) >= 4:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "done").exists(), "the run finished before it could be killed"
    checkpoint.load(last)  # whatever moment the kill hit, the checkpoint on disk loads
    resumed = subprocess.run(_train_cmd(data, tmp_path / "killed", 12, ["--resume"]), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "full")
    a = json.loads((tmp_path / "full" / "summary.json").read_text())
    b = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert a["test_acc"] == b["test_acc"] and a["val_acc"] == b["val_acc"]


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    checkpoint.save_atomic({"model": {"w": torch.ones(3)}, "config": {}}, path)

    def dying_save(obj, fh):
        fh.write(b"partial bytes")
        raise KeyboardInterrupt  # the process dies in the middle of writing

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"model": {"w": torch.zeros(3)}, "config": {}}, path)
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_pickled_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "x": Payload()}, evil)
    with pytest.raises(SoundformerError, match="refusing to load"):
        checkpoint.load(evil)
    assert not marker.exists()


def test_early_stopping_and_best_selection(tiny_esc10, tmp_path):
    cfg = tiny_cfg("train.epochs=30", "train.early_stopping=2", "train.lr=1e-6", "train.select=best")
    m = load_manifest(tiny_esc10)
    summary = run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    assert summary["epochs_run"] < 30
    assert summary["selected"].startswith("best")
    rows = metrics(tmp_path / "r")
    best = max(rows, key=lambda r: (float(r["val_acc"]), -float(r["val_loss"])))
    assert summary["best_epoch"] == int(best["epoch"])


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_schedules(schedule):
    cfg = load_config("logmel-transformer", [f"train.schedule={schedule}", "train.epochs=10", "train.warmup_epochs=2"])
    f = [lr_factor(cfg, s, 100) for s in range(100)]
    assert max(f) == pytest.approx(1.0, abs=0.02) and min(f) >= 0
    if schedule != "constant":
        assert f[0] < 0.2 and f[-1] < 0.05 and np.argmax(f) in range(15, 25)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_adamw_decays_weights_but_not_biases_norms_cls_or_positions(positions):
    from soundformer.models import build_model

    cfg = tiny_cfg(f"model.positions={positions}", "train.weight_decay=0.3")
    model = build_model(cfg, 10)
    decay_group, no_decay_group = make_optimizer(cfg, model).param_groups
    assert decay_group["weight_decay"] == 0.3 and no_decay_group["weight_decay"] == 0.0
    in_decay = {id(p) for p in decay_group["params"]}
    params = dict(model.named_parameters())
    decayed = {n for n, p in params.items() if id(p) in in_decay}
    kept = set(params) - decayed
    assert len(in_decay) + len(no_decay_group["params"]) == len(params)  # each parameter in one group
    # the projection of the stem's map into tokens is a weight matrix like any other
    assert any(n.endswith("to_tokens.weight") for n in decayed)
    assert any(n.endswith("fc1.weight") for n in decayed) and any(params[n].ndim == 4 for n in decayed)  # MLP, stem
    assert all(params[n].ndim > 1 for n in decayed)  # no bias or norm decays
    assert all(params[n].ndim <= 1 or n.endswith(("cls_token", "pos_table")) for n in kept)
    assert any(n.endswith("cls_token") for n in kept)
    assert any(n.endswith("pos_table") for n in kept) == (positions == "learned")


def test_tensorboard_tracker_writes_events(tiny_esc10, tmp_path):
    pytest.importorskip("tensorboard")
    cfg = tiny_cfg("train.epochs=1", "train.tracker=tensorboard")
    m = load_manifest(tiny_esc10)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))


def test_wandb_tracker_offline(tiny_esc10, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = tiny_cfg("train.epochs=1", "train.tracker=wandb")
    m = load_manifest(tiny_esc10)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    assert list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert (tmp_path / "r" / "curves.png").stat().st_size > 0  # the final figure sent to W&B


def test_cv_runs_all_jobs_and_skips_finished_ones(tiny_esc10, tmp_path):
    cfg = tiny_cfg("train.epochs=1")
    m = load_manifest(tiny_esc10)
    s = run_cv(cfg, m, tmp_path / "cv", protocol="report", progress=False, log=lambda _: None)
    assert s["jobs_planned"] == ["val1", "val2", "val3", "val4"] and "ensemble_test_acc" in s
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "cv").glob("*/summary.json")}
    logs = []
    s2 = run_cv(cfg, m, tmp_path / "cv", protocol="report", progress=False, log=logs.append)
    assert "4 of 4 jobs already done" in logs[0]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert s2["test_acc_mean"] == s["test_acc_mean"]


def test_cv_parallel_jobs_equal_serial(tiny_esc10, tmp_path):
    cfg = tiny_cfg("train.epochs=1")
    m = load_manifest(tiny_esc10)
    serial = run_cv(cfg, m, tmp_path / "s", protocol="standard", progress=False, log=lambda _: None)
    parallel = run_cv(cfg, m, tmp_path / "p", protocol="standard", jobs=2, progress=False, log=lambda _: None)
    assert serial["per_job"].keys() == parallel["per_job"].keys() == {f"test{k}" for k in range(1, 6)}
    for k in serial["per_job"]:
        assert serial["per_job"][k]["test_acc"] == parallel["per_job"][k]["test_acc"]


def test_unwritable_output_is_detected_before_training(tiny_esc10, tmp_path, capsys):
    if os.geteuid() == 0:
        target = Path("/proc/soundformer-run")  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "run"
    args = ["train", "--data", str(tiny_esc10), "--epochs", "1", "--quiet", "--out", str(target)]
    assert main(args) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_torchrun_two_processes_match_one(tmp_path):
    """DDP on CPU (gloo, 2 processes) ends within tolerance of a single process."""
    data = write_esc10(tmp_path / "d", per_fold=2)
    common = ["--data", str(data), "--epochs", "4", "--quiet", "--set", "augment.mixup_alpha=0",
              "--set", "train.batch_size=8"]
    for kv in TINY:
        if not kv.startswith("train.batch_size"):
            common += ["--set", kv]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "soundformer", "train", *common, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "soundformer",
                          "train", *common, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(a) == len(b) == 4
    for ra, rb in zip(a, b):
        assert float(ra["lr"]) == pytest.approx(float(rb["lr"]))
        assert abs(float(ra["val_loss"]) - float(rb["val_loss"])) < 0.1
        assert abs(float(ra["train_loss"]) - float(rb["train_loss"])) < 0.2
    assert (tmp_path / "two" / "done").exists() and not list((tmp_path / "two").glob("*rank*"))


def test_val_fraction_zero_trains_on_every_training_clip(tiny_esc10, tmp_path):
    m = load_manifest(tiny_esc10)
    job = [j for j in plan_jobs(m, "standard") if j.test_folds == [5]][0]
    with_val = make_split(m, job, tiny_cfg("train.select=last"))
    cfg = tiny_cfg("train.val_fraction=0", "train.select=last", "train.epochs=1")
    split = make_split(m, job, cfg)
    assert split.val == [] and split.names["val"] == []
    assert sorted(str(it.path) for it in split.train) == sorted(str(it.path) for it in with_val.train + with_val.val)
    summary = run_job(cfg, m, split, tmp_path / "r", progress=False)
    assert summary["train_n"] == len(split.train) and "val_acc" not in summary
    assert "val_acc" not in metrics(tmp_path / "r")[0]
    # choosing a checkpoint or stopping by validation is impossible without validation data
    for extra in ("train.select=best", "train.early_stopping=5"):
        with pytest.raises(SoundformerError, match="val_fraction=0 leaves no validation data"):
            make_split(m, job, tiny_cfg("train.val_fraction=0", "train.select=last", extra))
    # the report protocol validates on a whole fold, so val_fraction plays no part there
    report = make_split(m, plan_jobs(m, "report")[0], cfg)
    assert report.val and {it.fold for it in report.val} == {1}


def test_crop_fraction_trains_on_crops_and_evaluates_whole_windows(tiny_esc10, tmp_path, monkeypatch):
    import soundformer.train as train_module

    lengths = {"train": set(), "eval": set()}
    step_forward = train_module.TrainStep.forward

    def recording_step(self, wav, target):
        lengths["train"].add(wav.shape[-1])
        return step_forward(self, wav, target)

    monkeypatch.setattr(train_module.TrainStep, "forward", recording_step)
    cfg = tiny_cfg("augment.crop_fraction=0.5", "train.epochs=1")
    m = load_manifest(tiny_esc10)
    model_forward = train_module.AudioClassifier.forward

    def recording_model(self, wav, *args, **kwargs):
        if not torch.is_grad_enabled():
            lengths["eval"].add(wav.shape[-1])
        return model_forward(self, wav, *args, **kwargs)

    monkeypatch.setattr(train_module.AudioClassifier, "forward", recording_model)
    summary = run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    rate = cfg.audio.sample_rate
    assert lengths["train"] == {rate // 4}  # 0.25-s crops of the 0.5-s window
    assert lengths["eval"] == {rate // 2}  # validation and test: whole 0.5-s windows
    assert summary["test_n"] == 3
    assert "crop_fraction: 0.5" in (tmp_path / "r" / "config.yaml").read_text()


def test_crop_spread_draws_one_crop_length_per_batch(tiny_esc10, tmp_path, monkeypatch):
    import soundformer.train as train_module

    lengths = {"loader": set(), "model": []}
    step_forward = train_module.TrainStep.forward

    def recording_step(self, wav, target):
        lengths["loader"].add(wav.shape[-1])
        return step_forward(self, wav, target)

    frontend_forward = train_module.StandardisedFrontEnd.forward

    def recording_frontend(self, wav, *args, **kwargs):
        if torch.is_grad_enabled():  # training steps (evaluation runs without gradients)
            lengths["model"].append(wav.shape[-1])
        return frontend_forward(self, wav, *args, **kwargs)

    monkeypatch.setattr(train_module.TrainStep, "forward", recording_step)
    monkeypatch.setattr(train_module.StandardisedFrontEnd, "forward", recording_frontend)
    cfg = tiny_cfg("augment.crop_fraction=0.5", "augment.crop_spread=0.25", "train.epochs=3", "model.ensemble=[]")
    m = load_manifest(tiny_esc10)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    rate = cfg.audio.sample_rate  # 0.5-s windows: crops of 0.125-0.375 s, cut from 0.375-s loader crops
    assert lengths["loader"] == {round(rate * 0.375)}
    assert all(round(rate * 0.125) <= n <= round(rate * 0.375) for n in lengths["model"])
    assert len(set(lengths["model"])) >= 3  # a length drawn for each batch


@pytest.mark.parametrize("member_crops", [False, True])
def test_member_crops_give_each_member_its_own_crop(tiny_esc10, tmp_path, monkeypatch, member_crops):
    import soundformer.train as train_module

    seen = {"loader": set(), "members": []}  # members: per training step, the waveforms each member heard
    step_forward = train_module.TrainStep.forward

    def recording_step(self, wav, target):
        seen["loader"].add(wav.shape[-1])
        seen["members"].append([])
        return step_forward(self, wav, target)

    frontend_forward = train_module.StandardisedFrontEnd.forward

    def recording_frontend(self, wav, *args, **kwargs):
        if torch.is_grad_enabled():  # training steps (evaluation runs without gradients)
            seen["members"][-1].append(wav.detach().clone())
        return frontend_forward(self, wav, *args, **kwargs)

    monkeypatch.setattr(train_module.TrainStep, "forward", recording_step)
    monkeypatch.setattr(train_module.StandardisedFrontEnd, "forward", recording_frontend)
    cfg = tiny_cfg("augment.crop_fraction=0.5", f"augment.member_crops={str(member_crops).lower()}", "train.epochs=2")
    m = load_manifest(tiny_esc10)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    rate = cfg.audio.sample_rate  # 0.5-s windows, 0.25-s crops
    assert seen["loader"] == {rate // 2 if member_crops else rate // 4}  # whole windows, or the crops themselves
    steps = seen["members"]
    assert steps and all(len(heard) == 2 for heard in steps)  # the log and the PCEN member
    assert all(x.shape[-1] == rate // 4 for heard in steps for x in heard)
    same = [torch.equal(log_heard, pcen_heard) for log_heard, pcen_heard in steps]
    assert not any(same) if member_crops else all(same)


def test_crop_min_energy_reaches_the_training_crops(tiny_esc10, tmp_path, monkeypatch):
    import soundformer.train as train_module

    made = []
    real_dataset = train_module.WindowDataset

    def recording_dataset(*args, **kwargs):
        made.append(real_dataset(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(train_module, "WindowDataset", recording_dataset)
    cfg = tiny_cfg("augment.crop_fraction=0.5", "augment.crop_min_energy=0.25", "train.epochs=1", "model.ensemble=[]")
    m = load_manifest(tiny_esc10)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    (train_set,) = made
    # every clip has its list of allowed starts, each crop of them holding >= 0.25 of the loudest crop
    assert len(train_set.starts) == len(train_set.clips) and all(s is not None for s in train_set.starts)
    for clip, starts in zip(train_set.clips, train_set.starts):
        power = torch.cumsum(torch.cat([torch.zeros(1), clip.double() ** 2]), 0)
        every = torch.arange(0, len(clip) - train_set.length + 1, train_set.energy_hop)
        loudest = (power[every + train_set.length] - power[every]).max()
        held = power[torch.as_tensor(starts) + train_set.length] - power[torch.as_tensor(starts)]
        assert bool((held >= 0.25 * loudest - 1e-9).all())
    assert "crop_min_energy: 0.25" in (tmp_path / "r" / "config.yaml").read_text()


def test_lowpass_band_limits_training_clips_below_the_fitted_band_top(tiny_esc10, tmp_path, monkeypatch):
    import soundformer.train as train_module

    calls = []
    real_lowpass = train_module.random_lowpass

    def recording_lowpass(wav, **kwargs):
        calls.append(kwargs)
        return real_lowpass(wav, **kwargs)

    monkeypatch.setattr(train_module, "random_lowpass", recording_lowpass)
    cfg = tiny_cfg("augment.lowpass_prob=0.5", "augment.lowpass_min_hz=500", "train.epochs=1", "model.ensemble=[]")
    m = load_manifest(tiny_esc10)
    summary = run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    fitted = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    top = fitted["features"]["f_max"] or cfg.audio.sample_rate / 2
    assert calls and all(c["max_hz"] == top and c["min_hz"] == 500 and c["prob"] == 0.5 for c in calls)
    assert all(c["sample_rate"] == cfg.audio.sample_rate for c in calls)
    assert fitted["augment"]["lowpass_prob"] == 0.5 and summary["test_n"] > 0


def test_ctrl_c_stops_the_whole_cross_validation(tiny_esc10, tmp_path, monkeypatch):
    """Ctrl-C inside one fold must not roll on to the next fold (it used to: the interruption
    was reported like a failed job and the loop went on)."""
    import soundformer.cv as cv_mod
    from soundformer.errors import Interrupted

    calls = []

    def interrupted_job(cfg, manifest, split, run_dir, **kw):
        calls.append(run_dir.name)
        raise Interrupted(f"interrupted; the last finished epoch is saved in {run_dir}")

    monkeypatch.setattr(cv_mod, "run_job", interrupted_job)
    with pytest.raises(Interrupted, match="Run the same command again"):
        run_cv(tiny_cfg("train.epochs=1"), load_manifest(tiny_esc10), tmp_path / "cv", protocol="standard",
               progress=False, log=lambda _: None)
    assert calls == ["test1"]


def test_weight_ema_forgets_the_initial_weights_on_short_runs():
    from torch.optim.swa_utils import AveragedModel

    from soundformer.train import warmup_ema_update

    model = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(0.0)  # the "initial" weights
    ema = AveragedModel(model, multi_avg_fn=warmup_ema_update(0.998), use_buffers=True)
    ema.update_parameters(model)  # first update copies
    with torch.no_grad():
        model.weight.fill_(1.0)  # where training went
    for _ in range(720):  # 80 epochs of 9 steps, as on ESC-10
        model(torch.randn(4, 3))
        ema.update_parameters(model)
    # a fixed decay would keep 0.998**720 = 24 % of the initial weights (average 0.76)
    assert ema.module.weight.min().item() > 0.98
    assert ema.module.num_batches_tracked.item() == model.num_batches_tracked.item() == 720
    # the ramp (2/11 after one update) never exceeds the decay asked for: 0.1 here
    fast = AveragedModel(model, multi_avg_fn=warmup_ema_update(0.1), use_buffers=True)
    fast.update_parameters(model)
    with torch.no_grad():
        model.weight.fill_(3.0)
    fast.update_parameters(model)
    assert torch.allclose(fast.module.weight, torch.full((3,), 0.1 * 1.0 + 0.9 * 3.0))


def test_normalisation_statistics_are_per_channel_for_log_plus_pcen():
    from soundformer.config import load_config
    from soundformer.models import build_model
    from soundformer.train import Clips, fit_normalisation

    cfg = load_config("logmel-transformer", ["model.ensemble=[]", "features.compression=log+pcen", "audio.window_seconds=1"])
    model = build_model(cfg, 3)
    rng = np.random.default_rng(0)
    audio = [(rng.standard_normal(16000) * 0.1).astype(np.float32) for _ in range(3)]
    fit_normalisation(model, Clips(items=[], audio=audio), 16000, "loop")
    fe = model.frontend
    feats = fe(torch.from_numpy(np.stack(audio)))  # (3, 2, 64, T), standardised
    pooled = feats.permute(1, 2, 0, 3).flatten(2)  # (2, 64, 3 * T)
    torch.testing.assert_close(pooled.mean(-1), torch.zeros(2, 64), atol=1e-3, rtol=0)
    torch.testing.assert_close(pooled.std(-1, unbiased=False), torch.ones(2, 64), atol=1e-3, rtol=0)
    assert not torch.allclose(fe.mean[0], fe.mean[1])  # the log and PCEN channels get their own


def test_checkpoint_every_thins_last_pt_and_resume_keeps_a_newer_best(tiny_esc10, tmp_path, monkeypatch):
    """train.checkpoint_every=2: last.pt at even epochs and at the end; a run stopped when best.pt
    is newer than last.pt resumes with that best, and the selected model is best.pt's weights."""
    cfg = tiny_cfg("train.epochs=6", "train.checkpoint_every=2", "train.lr=0.003", "train.select=best")
    m = load_manifest(tiny_esc10)
    split = one_job(m, cfg)
    real_save, saves = checkpoint.save_atomic, []

    def save_then_maybe_stop(obj, path):
        real_save(obj, path)
        saves.append((Path(path).name, obj["epoch"]))
        if Path(path).name == "best.pt" and obj["epoch"] % 2 == 1 and obj["epoch"] >= 3:
            raise KeyboardInterrupt  # Ctrl-C right after a best.pt newer than last.pt

    monkeypatch.setattr(checkpoint, "save_atomic", save_then_maybe_stop)
    run = tmp_path / "run"
    with pytest.raises(SoundformerError, match="interrupted"):
        run_job(cfg, m, split, run, progress=False)
    stopped_at = saves[-1][1]
    assert [e for name, e in saves if name == "last.pt"] == list(range(2, stopped_at, 2))
    best_pt = checkpoint.load(run / "checkpoints" / "best.pt")
    assert best_pt["epoch"] == stopped_at > checkpoint.load(run / "checkpoints" / "last.pt")["epoch"]
    monkeypatch.setattr(checkpoint, "save_atomic", real_save)
    summary = run_job(cfg, m, split, run, progress=False, resume=True)
    assert summary["epochs_run"] == 6 and summary["best_epoch"] >= stopped_at
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 6
    final = checkpoint.load(run / "checkpoints" / "best.pt")
    model = checkpoint.load(run / "checkpoints" / "model.pt")["model"]
    assert final["epoch"] == summary["best_epoch"]
    assert all(torch.equal(model[k], final["model"][k]) for k in model)


def test_checkpoint_every_must_be_positive():
    with pytest.raises(SoundformerError, match="checkpoint_every"):
        tiny_cfg("train.checkpoint_every=0")


def test_max_minutes_stops_then_selects_and_tests(tiny_esc10, tmp_path, capsys):
    cfg = tiny_cfg("train.epochs=5", "train.max_minutes=1e-6", "train.checkpoint_every=4")
    m = load_manifest(tiny_esc10)
    summary = run_job(cfg, m, one_job(m, cfg), tmp_path / "run", progress=False)
    assert "train.max_minutes=1e-06 reached after epoch 1 of 5" in capsys.readouterr().out
    assert summary["epochs_run"] == 1 and len(metrics(tmp_path / "run")) == 1
    assert summary["best_epoch"] == 1 and "test_acc" in summary and (tmp_path / "run" / "done").exists()
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1  # saved on stopping


def _items_at(root: Path, rates: list[int]) -> list:
    from soundformer.data.sources import Item

    root.mkdir(parents=True, exist_ok=True)
    items = []
    for k, sr in enumerate(rates):
        path = root / f"{k}.wav"
        sf.write(path, np.zeros(sr // 10, dtype=np.float32), sr)
        items.append(Item(path, 0, "a", 1, str(k)))
    return items


@pytest.mark.parametrize("rates, f_max, expected", [
    ([8000] * 5 + [11025] * 5, 0.0, 4000.0),  # mixed low rates: the lower bandwidth
    ([44100] * 19 + [8000], 0.0, 0.0),  # one low-rate clip in twenty does not narrow everyone
    ([48000, 22050, 16000], 0.0, 0.0),  # at or above audio.sample_rate: nothing to fit
    ([11025] * 4, 0.0, 5512.5),
    ([11025] * 4, 3000.0, 3000.0),  # an explicit, lower f_max stays
])
def test_fit_bandwidth_caps_f_max_at_the_training_clips_bandwidth(tmp_path, rates, f_max, expected):
    from soundformer.train import fit_bandwidth

    cfg = load_config("logmel-transformer", [f"features.f_max={f_max}"])
    messages = []
    fitted = fit_bandwidth(cfg, _items_at(tmp_path, rates), messages.append)
    assert fitted.features.f_max == expected
    assert cfg.features.f_max == f_max  # the caller's config is left alone
    assert bool(messages) == (expected != f_max)
    off = load_config("logmel-transformer", [f"features.f_max={f_max}", "features.fit_bandwidth=false"])
    assert fit_bandwidth(off, _items_at(tmp_path, rates), messages.append).features.f_max == f_max
    waveform = load_config("seed-cnn")
    assert fit_bandwidth(waveform, _items_at(tmp_path, rates), messages.append) is waveform


def test_fitted_bandwidth_is_saved_and_comes_from_training_clips_only(tmp_path, capsys):
    """Tiny ESC-10 at 8 kHz: the run's config.yaml and checkpoint say f_max 4000; test-fold clips
    at 8 kHz among 16-kHz training clips change nothing."""
    data = write_esc10(tmp_path / "low", sr=8000)
    cfg = tiny_cfg("train.epochs=1")
    m = load_manifest(data)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "r", progress=False)
    assert "features.f_max set to 4000 Hz" in capsys.readouterr().out
    assert load_config(str(tmp_path / "r" / "config.yaml")).features.f_max == 4000
    saved = checkpoint.load(tmp_path / "r" / "checkpoints" / "model.pt")
    assert saved["config"]["features"]["f_max"] == 4000 and cfg.features.f_max == 0

    mixed = write_esc10(tmp_path / "mixed", sr=16000)
    for p in mixed.rglob("5-*.wav"):  # the test fold at 8 kHz
        sf.write(p, np.zeros(8000, dtype=np.float32), 8000)
    m = load_manifest(mixed)
    run_job(cfg, m, one_job(m, cfg), tmp_path / "r2", progress=False)
    assert "features.f_max set" not in capsys.readouterr().out
    assert load_config(str(tmp_path / "r2" / "config.yaml")).features.f_max == 0


def test_sam_ascend_moves_each_member_rho_along_its_own_gradient_and_descend_puts_it_back():
    from soundformer import sam

    members = [torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)]
    for scale, m in zip((1.0, 100.0), members, strict=True):  # very different gradient sizes
        (scale * m(torch.ones(4, 3)).pow(2).sum()).backward()
    before = [[p.clone() for p in m.parameters()] for m in members]
    moved = sam.ascend(members, rho=0.05)
    for m, old in zip(members, before, strict=True):
        step = torch.cat([(p - o).flatten() for p, o in zip(m.parameters(), old, strict=True)])
        grad = torch.cat([p.grad.flatten() for p in m.parameters()])
        torch.testing.assert_close(step.norm(), torch.tensor(0.05))  # each member: rho, whatever its scale
        torch.testing.assert_close(step, 0.05 * grad / grad.norm())
    sam.descend(moved)
    for m, old in zip(members, before, strict=True):
        for p, o in zip(m.parameters(), old, strict=True):
            torch.testing.assert_close(p, o)


def test_sam_leaves_a_member_with_a_non_finite_gradient_in_place():
    from soundformer import sam

    m = torch.nn.Linear(3, 2)
    m(torch.ones(1, 3)).sum().backward()
    m.weight.grad[0, 0] = float("inf")  # an fp16 overflow: the scaler skips this step anyway
    before = m.weight.clone()
    assert sam.ascend([m], rho=0.05) == []
    torch.testing.assert_close(m.weight, before)


def test_sam_replay_sees_the_same_augmented_batch_and_leaves_batchnorm_statistics_alone():
    from soundformer import sam
    from soundformer.models import build_model
    from soundformer.train import TrainStep, rng_state, set_rng_state

    cfg = tiny_cfg("model.ensemble=[log,pcen]", "augment.mixup_alpha=0.4", "augment.freq_masks=1",
                   "augment.time_masks=1", "augment.gain_db=6", "augment.crop_fraction=0.6")
    model = build_model(cfg, 3).train()  # dropout, mixup, masks, gain and crops all draw
    step = TrainStep(model, cfg)
    wav, target = torch.randn(4, 8000) * 0.1, torch.eye(3)[[0, 1, 2, 0]]
    torch.manual_seed(0)
    state = rng_state()
    loss, _, soft = step(wav, target)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    assert stats
    set_rng_state(state)
    with sam.frozen_batchnorm_stats(model):
        replayed, _, replayed_soft = step(wav, target)
    torch.testing.assert_close(replayed, loss)
    torch.testing.assert_close(replayed_soft, soft)
    for k, v in model.state_dict().items():
        if k in stats:
            torch.testing.assert_close(v, stats[k], msg=k)
    step(wav, target)  # outside the context the statistics move again
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in stats.items())


def test_sam_run_trains_differently_at_twice_the_passes_and_repeats(tiny_esc10, tmp_path, monkeypatch):
    from soundformer.train import TrainStep

    calls = []
    forward = TrainStep.forward
    monkeypatch.setattr(TrainStep, "forward", lambda self, *a: calls.append(1) or forward(self, *a))
    m = load_manifest(tiny_esc10)
    runs = {}
    for name, extra in (("plain", []), ("sam", ["train.sam_rho=0.05"]), ("sam2", ["train.sam_rho=0.05"])):
        cfg = tiny_cfg("train.epochs=2", *extra)
        calls.clear()
        run_job(cfg, m, one_job(m, cfg), tmp_path / name, progress=False)
        runs[name] = (len(calls), metrics(tmp_path / name))
    assert runs["sam"][0] == 2 * runs["plain"][0] > 0  # a second pass per step
    assert runs["sam"][1] != runs["plain"][1]  # it changes the training
    assert runs["sam"][1] == runs["sam2"][1]  # and repeats with the same seed


def test_sam_rho_must_not_be_negative():
    with pytest.raises(SoundformerError, match=r"train.sam_rho must be >= 0"):
        load_config("logmel-transformer", ["train.sam_rho=-0.1"])


def test_bce_loss_is_per_class_sigmoid_cross_entropy_on_soft_targets():
    from soundformer.train import soft_binary_cross_entropy, soft_cross_entropy

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    target = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]])  # a mixed clip, a plain one
    p = logits.sigmoid()
    by_hand = -(target * p.log() + (1 - target) * (1 - p).log()).sum(-1).mean()
    torch.testing.assert_close(soft_binary_cross_entropy(logits, target), by_hand)
    # unlike softmax cross-entropy, adding a constant to every logit changes it: each class is
    # judged on its own, so the non-target logits are pushed down, not only relatively
    shifted = logits + 3.0
    torch.testing.assert_close(soft_cross_entropy(shifted, target), soft_cross_entropy(logits, target))
    assert soft_binary_cross_entropy(shifted, target) > soft_binary_cross_entropy(logits, target) + 1


def test_train_loss_option_reaches_every_member_and_changes_training(tiny_esc10, tmp_path):
    from soundformer.models import build_model
    from soundformer.train import TrainStep, soft_binary_cross_entropy

    cfg = tiny_cfg("model.ensemble=[log,pcen]", "train.loss=bce", "augment.mixup_alpha=0.4")
    model = build_model(cfg, 3).train()
    step = TrainStep(model, cfg)
    wav, target = torch.randn(4, 8000) * 0.1, torch.eye(3)[[0, 1, 2, 0]]
    outputs = []  # each member's (logits, soft targets), as the step computed them
    forward = step.member_forward
    step.member_forward = lambda *a: outputs.append(forward(*a)) or outputs[-1]
    loss = step(wav, target)[0]
    assert len(outputs) == len(model.members()) == 2
    torch.testing.assert_close(loss, sum(soft_binary_cross_entropy(x, t) for x, t in outputs))

    m = load_manifest(tiny_esc10)
    runs = {}
    for name, extra in (("ce", ["train.loss=ce"]), ("bce", ["train.loss=bce"]), ("bce2", ["train.loss=bce"])):
        c = tiny_cfg("train.epochs=2", *extra)
        run_job(c, m, one_job(m, c), tmp_path / name, progress=False)
        runs[name] = metrics(tmp_path / name)
    assert runs["bce"] != runs["ce"] and runs["bce"] == runs["bce2"]


def test_unknown_train_loss_is_refused_in_one_line():
    with pytest.raises(SoundformerError, match=r"train.loss.*ce.*bce"):
        load_config("logmel-transformer", ["train.loss=focal"])
