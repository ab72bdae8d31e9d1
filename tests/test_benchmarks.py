"""The table tool behind docs/RESULTS.md prints what the run folders hold."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soundformer.config import load_config, save_config

ROOT = Path(__file__).resolve().parents[1]


def fake_cv(folder: Path, accs: list[float], overrides: list[str]) -> Path:
    jobs = [f"test{i + 1}" for i in range(len(accs))]
    (folder).mkdir(parents=True)
    (folder / "cv_summary.json").write_text(json.dumps({
        "protocol": "standard", "preset": "logmel-transformer", "jobs_planned": jobs, "val_acc_mean": 0.9}))
    for job, acc in zip(jobs, accs):
        (folder / job).mkdir()
        (folder / job / "summary.json").write_text(json.dumps({"test_acc": acc, "train_time_s": 60.0,
                                                                "params_trainable": 1000}))
        save_config(load_config("logmel-transformer", overrides + ["train.threads=2"]), folder / job / "config.yaml")
    return folder


def test_ablation_table_names_changed_settings_and_differences(tmp_path):
    base = fake_cv(tmp_path / "base", [0.9, 0.8], [])
    other = fake_cv(tmp_path / "nomix", [0.8, 0.8], ["augment.mixup_alpha=0", "train.seed=3"])
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_table.py"), "--ablation", str(base),
                          str(other)], capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| base") or line.startswith("| nomix")]
    assert rows[0] == "| base | (the recipe) | 90.0 / 80.0 | 85.0 ± 5.0 % | – |"
    assert rows[1] == "| nomix | `augment.mixup_alpha=0.0`, `train.seed=3` | 80.0 / 80.0 | 80.0 ± 0.0 % | -5.0 pts |"


def test_seed_table_groups_runs_by_variant(tmp_path):
    runs = [fake_cv(tmp_path / "base_s0", [0.9, 0.8], []), fake_cv(tmp_path / "base_s1", [0.8, 0.8], ["train.seed=1"]),
            fake_cv(tmp_path / "ls_s0", [1.0, 0.9], ["train.label_smoothing=0.1"]),
            fake_cv(tmp_path / "ls_s1", [0.9, 0.9], ["train.label_smoothing=0.1", "train.seed=1"])]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_table.py"), "--seeds", *map(str, runs)],
                         capture_output=True, text=True, check=True).stdout
    assert "| base | (the recipe) | 0, 1 | 85.0 / 80.0 | 82.5 ± 2.5 % | – |" in out
    assert "| ls | `train.label_smoothing=0.1` | 0, 1 | 95.0 / 90.0 | 92.5 ± 2.5 % | +10.0 pts |" in out


def test_results_table_explains_itself_and_needs_a_run_folder():
    script = str(ROOT / "benchmarks" / "results_table.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert "--ablation BASE" in shown.stdout and "--seeds" in shown.stdout and "RUN" in shown.stdout
    missing = subprocess.run([sys.executable, script, "--seeds"], capture_output=True, text=True)
    assert missing.returncode == 2 and "the following arguments are required: RUN" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("script", ["results_table", "hard_clips", "members", "tta", "lowpass_probe"])
def test_benchmark_scripts_name_an_unfinished_run(tmp_path, script):
    (tmp_path / "running").mkdir()
    folders = [str(tmp_path / "running")]
    if script == "results_table":  # checks every folder before it prints a row
        folders.insert(0, str(fake_cv(tmp_path / "done_s0", [0.9, 0.8], [])))
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *folders],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "running holds no cv_summary.json: not a finished `soundformer cv` run" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("script", ["members", "tta", "lowpass_probe"])
def test_rescoring_scripts_name_a_run_copied_without_checkpoints(tmp_path, script):
    done = fake_cv(tmp_path / "done_s0", [0.9, 0.8], [])
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), str(done)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "has no checkpoints/model.pt for test1, test2" in result.stderr
    assert "Traceback" not in result.stderr


def fake_predictions(folder: Path, guesses: dict[str, int], root: str = "") -> Path:
    """One standard-protocol job whose test clips (name -> true class = first digit) get ``guesses``."""
    import numpy as np

    (folder / "test1").mkdir(parents=True)
    (folder / "cv_summary.json").write_text(json.dumps({"jobs_planned": ["test1"]}))
    paths = [root + p for p in sorted(guesses)]
    labels = np.array([int(p[0]) for p in sorted(guesses)])
    probs = np.full((len(paths), 3), 0.1)
    probs[np.arange(len(paths)), [guesses[p] for p in sorted(guesses)]] = 0.8
    np.savez(folder / "test1" / "predictions.npz", classes=np.array(["a", "b", "c"]), test_paths=np.array(paths),
             test_labels=labels, test_probs=probs)
    return folder


def test_hard_clips_finds_errors_every_run_shares(tmp_path):
    a = fake_predictions(tmp_path / "a", {"0-1-A.wav": 0, "1-7-A.wav": 2, "1-7-B.wav": 2, "2-9-A.wav": 2})
    b = fake_predictions(tmp_path / "b", {"0-1-A.wav": 1, "1-7-A.wav": 2, "1-7-B.wav": 2, "2-9-A.wav": 2})
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hard_clips.py"), str(a), str(b)],
                         capture_output=True, text=True, check=True).stdout
    assert f"| {a} | 50.0 | 50.0 ± 0.0 % | 2 |" in out
    assert f"| {b} | 25.0 | 25.0 ± 0.0 % | 3 |" in out
    assert "| ensemble of the 2 runs | 50.0 | 50.0 ± 0.0 % | 2 |" in out  # 0-1-A: a tie, won by the true class
    assert "3 of 4 clips are wrong in at least one run; 2 in at least 2 of 2" in out
    assert "| 1-7-A.wav | b | 2 of 2 | c (2) |" in out and "| 0-1-A.wav |" not in out
    assert "1-7 (2 clips)" in out


def test_hard_clips_lines_up_runs_made_from_copies_of_the_data_elsewhere(tmp_path):
    a = fake_predictions(tmp_path / "a", {"0-1-A.wav": 0, "1-7-A.wav": 2}, root="/data/esc10/001 - Dog/")
    b = fake_predictions(tmp_path / "b", {"0-1-A.wav": 0, "1-7-A.wav": 1}, root="/copy/.esc10/001 - Dog/")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hard_clips.py"), str(a), str(b)],
                         capture_output=True, text=True, check=True).stdout
    assert "| ensemble of the 2 runs | 100.0 |" in out
    assert "1 of 2 clips are wrong in at least one run" in out


def test_collapse_only_refuses_unknown_variants_by_name(tiny_esc10):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "collapse.py"), "--data", str(tiny_esc10),
                          "--only", "no such variant"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "matches none of" in out.stderr and "time tokens" in out.stderr
    assert "Traceback" not in out.stderr


def test_reshape_dataset_writes_variable_lengths_and_rates_keeping_folds_and_groups(tmp_path):
    import soundfile as sf

    from soundformer.data.sources import load_manifest

    from .conftest import write_esc10

    source = write_esc10(tmp_path / "esc10", per_fold=2, seconds=3.0)
    out = tmp_path / "reshaped"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "reshape_dataset.py"), str(source), str(out),
           "--rates", "22050,44100", "--min-seconds", "0.5", "--max-seconds", "2"]
    subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    original, copy = load_manifest(source), load_manifest(out / "manifest.csv")
    assert copy.classes == original.classes and len(copy) == len(original)
    by_name = {Path(it.path).stem: it for it in original.items}
    lengths, rates = [], set()
    for it in copy.items:
        twin = by_name[Path(it.path).stem]
        assert (it.class_name, it.fold, it.group) == (twin.class_name, twin.fold, twin.group)
        info = sf.info(it.path)
        lengths.append(info.duration)
        rates.add(info.samplerate)
    assert rates == {22050, 44100}
    assert 0.5 <= min(lengths) and max(lengths) <= 2.0 and max(lengths) - min(lengths) > 0.3
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr  # never writes over an earlier copy


def test_loudest_stretch_keeps_the_event():
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from reshape_dataset import loudest_stretch

    wav = np.zeros(1000, dtype=np.float32)
    wav[600:700] = 1.0
    cut = loudest_stretch(wav, 200)
    assert len(cut) == 200 and cut.sum() == 100  # the whole event is inside
    assert np.array_equal(loudest_stretch(wav, 2000), wav)


def test_speed_training_step_updates_the_model_and_keeps_labels_on_its_device():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import speed
        from common import build, clip_batch
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    cfg, model = build("logmel-cnn")
    before = [p.detach().clone() for p in model.parameters()]
    speed.training_step(model, clip_batch(cfg, 2))()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # an ensemble with a modulation member: the twin swaps the transformers' blocks and leaves the modulation member
    cfg, model = build("logmel-transformer", ["model.depth=1", "model.ensemble=[log,pcen,modulation]"])
    twin = speed.make_twin(model)
    kinds = [type(m.encoder.blocks[0]).__name__ if hasattr(m, "encoder") else type(m).__name__
             for m in twin.members()]
    assert kinds == ["TorchBlock", "TorchBlock", "ModulationLinear"]
    out = twin(clip_batch(cfg, 2))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_crop_speed_times_each_length_policy_over_the_same_range():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import crop_speed
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import numpy as np

    rng = np.random.default_rng(0)
    kw = dict(shortest=100, longest=400, mean=250, grid=4, steps=200, rng=rng)
    assert crop_speed.policy_lengths("fixed", **kw) == [250] * 200
    assert crop_speed.policy_lengths("shortest", **kw) == [100] * 200
    assert crop_speed.policy_lengths("longest", **kw) == [400] * 200
    continuous = crop_speed.policy_lengths("continuous", **kw)
    assert 100 <= min(continuous) and max(continuous) <= 400 and len(set(continuous)) > 100
    assert set(crop_speed.policy_lengths("grid", **kw)) == {100, 200, 300, 400}
    tiny = ["audio.window_seconds=0.5", "model.dim=32", "model.depth=1", "model.heads=2", "model.mlp_dim=32",
            "model.channels=[8,16]"]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "crop_speed.py"), "--steps", "2", "--warmup", "0",
                          "--rounds", "1", "--batch", "2", "--grid", "3", *[a for o in tiny for a in ("--set", o)]],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    rows = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r[0].strip("| ") for r in rows] == ["fixed", "shortest", "longest", "continuous", "grid 3"]
    assert [r[4] for r in rows[:3]] == ["4,800", "2,400", "7,200"]  # 0.6, 0.3, 0.9 of a 0.5-s window at 16 kHz
    assert rows[0][5] == "1.00x" and rows[0][6].strip(" |") == "1.00x"
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "crop_speed.py"), "--spread", "0.5"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert bad.returncode == 2 and "leaves (0, 1]" in bad.stderr


def test_variant_speed_times_each_variant_on_the_input_training_feeds_it():
    from soundformer.train import loader_length

    window = ["audio.window_seconds=0.5"]  # 8,000 samples at 16 kHz; the preset crops 0.6 of it
    assert loader_length(load_config("logmel-transformer", window)) == 4800
    assert loader_length(load_config("logmel-transformer", window + ["augment.member_crops=true"])) == 8000
    tiny = window + ["model.dim=32", "model.depth=1", "model.heads=2", "model.mlp_dim=32", "model.channels=[8,16]"]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "variant_speed.py"), "--steps", "1", "--rounds", "1",
                          "--batch", "2", "--threads", "1", *[a for o in tiny for a in ("--set", o)],
                          "--variant", "crops", "augment.member_crops=true", "--variant", "deeper", "model.depth=2"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["preset:", "crops:", "deeper:"]
    assert rows[0][-4:] == ["1.00x", "(as", "it", "is)"]
    assert rows[1][-1] == "(augment.member_crops=true)" and rows[2][-1] == "(model.depth=2)"
    for variant, message in ((["wide", "model.heads=3"], "wide: model.dim=128 is not divisible by model.heads=3"),
                             (["preset", "model.depth=2"], "variant names must differ")):
        bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "variant_speed.py"), "--variant", *variant],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


def run_smoke(script: str, tmp_path: Path, *args: str, **env: str) -> None:
    """Run a GPU benchmark script on the CPU in its SMOKE mode; it must exit 0."""
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "SOUNDFORMER_CACHE": str(tmp_path / "cache"), **env}
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_gpu_session_script_runs_end_to_end_in_smoke_mode(tiny_esc10, tmp_path):
    run_smoke("gpu_session.sh", tmp_path, str(tiny_esc10), str(tmp_path / "g"), "3000")
    walls = (tmp_path / "g" / "gpu_runs" / "logs" / "walltimes.txt").read_text()
    for job in ("seed_h1", "seed_h2", "seed_h4", "seed_cnn", "collapse_time", "lt_gpu_s0", "lt_wide_s0"):
        assert f"{job} rc=0" in walls
    assert (tmp_path / "g" / "gpu_runs" / "seed_h4" / "cv_summary.json").exists()


@pytest.mark.slow
def test_gpu_sweep_runs_each_variant_and_seed_in_smoke_mode(tiny_esc10, tmp_path):
    variants = tmp_path / "variants.txt"
    variants.write_text("# comment line\nbase\n\nls01  --set train.label_smoothing=0.1\n")
    run_smoke("gpu_sweep.sh", tmp_path, str(tiny_esc10), str(tmp_path / "s"), str(variants), "3000", "2",
              SEEDS="0 1")
    walls = (tmp_path / "s" / "logs" / "walltimes.txt").read_text()
    for run in ("base_s0", "base_s1", "ls01_s0", "ls01_s1"):
        assert f"{run} rc=0" in walls
        assert (tmp_path / "s" / run / "cv_summary.json").exists()
    saved = (tmp_path / "s" / "ls01_s1" / "test1" / "config.yaml").read_text()
    assert "label_smoothing: 0.1" in saved and "seed: 1" in saved


def test_gpu_sweep_order_tta_crops_and_input_checks(tmp_path):
    # a stand-in python that records each `soundformer cv` call, so only the script's order is tested
    fake = tmp_path / "fakepy"
    fake.write_text(f'#!/bin/bash\n[ "$2" = soundformer ] && echo "$@" >> {tmp_path}/calls.txt\n'
                    f'[[ "$1" = *tta.py ]] && echo "$@" >> {tmp_path}/tta.txt\nexit 0\n')
    fake.chmod(0o755)
    variants = tmp_path / "variants.txt"
    variants.write_text("base\nme025  --set augment.crop_min_energy=0.25\n")
    env = {**os.environ, "PYTHON": str(fake), "SEEDS": "0 1", "SOUNDFORMER_CACHE": str(tmp_path / "cache")}
    script = ["bash", str(ROOT / "benchmarks" / "gpu_sweep.sh"), "DATA", str(tmp_path / "s"), str(variants), "600", "1"]
    out = subprocess.run(script, capture_output=True, text=True, env={**env, "ORDER": "seed"})
    assert out.returncode == 0, out.stderr
    starts = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("start ")]
    assert starts == ["base_s0", "me025_s0", "base_s1", "me025_s1"]
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert [c.split("--seed ")[1].split()[0] for c in calls] == ["0", "0", "1", "1"]
    assert "augment.crop_min_energy=0.25" in calls[1] and "crop_min_energy" not in calls[0]
    assert not (tmp_path / "tta.txt").exists()  # TTA_CROPS off by default
    (tmp_path / "calls.txt").unlink()
    # TTA_CROPS=5: each finished run is scored both ways by tta.py while its checkpoints exist
    tta = subprocess.run(script[:-4] + [str(tmp_path / "t"), str(variants), "600", "1"], capture_output=True,
                         text=True, env={**env, "ORDER": "seed", "TTA_CROPS": "5"})
    assert tta.returncode == 0, tta.stderr
    scored = (tmp_path / "tta.txt").read_text().splitlines()
    assert [line.split()[1] for line in scored] == [str(tmp_path / "t" / r) for r in
                                                    ("base_s0", "me025_s0", "base_s1", "me025_s1")]
    assert all("--crops 5" in line for line in scored)
    (tmp_path / "calls.txt").unlink()
    default = subprocess.run(script[:-4] + [str(tmp_path / "v"), str(variants), "600", "1"], capture_output=True,
                             text=True, env=env)
    assert [line.split()[1] for line in default.stdout.splitlines() if line.startswith("start ")] == [
        "base_s0", "base_s1", "me025_s0", "me025_s1"]
    (tmp_path / "calls.txt").unlink()
    # wrong input fails at once, with one clear line, before the clips are decoded
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    for args, extra, message in ((script[2:], {"ORDER": "random"}, "ORDER must be"),
                                 (script[2:], {"TTA_CROPS": "five"}, "TTA_CROPS must be"),
                                 (["DATA", "OUT", str(tmp_path / "empty.txt")], {}, "names no variant"),
                                 (["DATA", "OUT", str(tmp_path / "missing.txt")], {}, "cannot read"),
                                 (["DATA", "OUT"], {}, "usage:")):
        bad = subprocess.run(script[:2] + args, capture_output=True, text=True, env={**env, **extra}, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "calls.txt").exists() and not (tmp_path / "OUT").exists()


@pytest.mark.slow
def test_gpu_seed_heads_runs_the_three_head_counts_in_smoke_mode(tiny_esc10, tmp_path):
    run_smoke("gpu_seed_heads.sh", tmp_path, str(tiny_esc10), str(tmp_path / "h"), "2.5")
    walls = (tmp_path / "h" / "logs" / "walltimes.txt").read_text()
    for h in (1, 2, 4):
        assert f"seed_h{h} rc=0" in walls
        summary = json.loads((tmp_path / "h" / f"seed_h{h}" / "cv_summary.json").read_text())
        assert summary["protocol"] == "report" and len(summary["jobs_planned"]) == 4
        saved = (tmp_path / "h" / f"seed_h{h}" / "val1" / "config.yaml").read_text()
        assert f"heads: {h}" in saved and "max_minutes: 2.5" in saved and "checkpoint_every: 25" in saved


def test_curves_reads_unfinished_runs_and_reports_best_and_last(tmp_path):
    head = "epoch,lr,train_loss,train_acc,val_loss,val_acc,epoch_time_s,data_wait_frac\n"
    for job, vals in (("val1", [0.1, 0.5, 0.4]), ("val2", [0.1, 0.1])):
        (tmp_path / "run" / job).mkdir(parents=True)
        rows = [f"{e + 1},0.001,{2.3 - e / 10},0.1,2.0,{v},1.5,0.0" for e, v in enumerate(vals)]
        (tmp_path / "run" / job / "metrics.csv").write_text(head + "\n".join(rows) + "\n")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "curves.py"), str(tmp_path / "run"), "--at", "1,3"],
                         capture_output=True, text=True, check=True).stdout
    assert "| run/val1 | 3 | 10.0 % | 40.0 % | 50.0 % (2) | 40.0 % | 2.100 | 1.5 |" in out
    assert "| run/val2 | 2 | 10.0 % | – | 10.0 % (1) | 10.0 % | 2.200 | 1.5 |" in out
    empty = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "curves.py"), str(tmp_path / "nothing")],
                           capture_output=True, text=True)
    assert empty.returncode != 0 and "no metrics.csv" in empty.stderr


def test_modulation_probe_finds_a_rotor_rate_and_scores_each_setting(tmp_path):
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from modulation_probe import modulation_features

    from .conftest import write_esc10

    rng = np.random.default_rng(0)
    t = np.arange(5 * 16000) / 16000
    bins = 16
    edges = np.geomspace(0.5, 16000 / 80 / 2, bins)
    for rate in (4.0, 30.0):  # noise whose loudness beats at `rate` Hz, as a rotor's does
        wav = rng.standard_normal(t.size) * (1.1 + np.sin(2 * np.pi * rate * t))
        feats = modulation_features(wav, sample_rate=16000, n_fft=512, hop=80, bands=4, bins=bins)
        per_bin = feats.reshape(4, bins - 1).mean(0)
        peak = int(per_bin.argmax())
        assert edges[peak] <= rate < edges[peak + 1]
    data = write_esc10(tmp_path / "esc10", seconds=1.0)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "modulation_probe.py"), str(data),
                          "--sample-rate", "8000", "--seconds", "1", "--settings", "256/80,256/40", "--bands", "8",
                          "--with-spectrum", "--clips", "1-10-A.wav"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 256 /")]
    assert [r.split("|")[1].strip() for r in rows] == ["256 / 80", "256 / 40"]
    assert all(0 <= float(r.split("|")[4].strip(" %")) <= 100 for r in rows)
    named = [line.split() for line in out.stdout.splitlines() if "1-10-A.wav" in line]
    assert [n[0] for n in named] == ["256/80", "256/40"]  # the named clip's prediction, per setting
    assert len(feats) == 4 * (bins - 1)
    assert len(modulation_features(wav, sample_rate=16000, n_fft=512, hop=80, bands=4, bins=bins,
                                   with_spectrum=True)) == 4 * (bins - 1) + 2 * 4
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "modulation_probe.py"), str(data),
                          "--settings", "512-160"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert bad.returncode != 0 and "WINDOW/HOP" in bad.stderr and "Traceback" not in bad.stderr


def test_late_fusion_averages_in_out_of_fold_probabilities(tmp_path):
    """The probe's --save-probs output lines up with a cv folder's test predictions by clip, and
    the fused row is the weighted average of the two."""
    import numpy as np

    from .conftest import write_esc10

    data = write_esc10(tmp_path / "esc10", seconds=1.0)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    probs_file = tmp_path / "probe.npz"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "modulation_probe.py"), str(data),
                          "--sample-rate", "8000", "--seconds", "1", "--settings", "256/80", "--bands", "8",
                          "--with-spectrum", "--save-probs", str(probs_file)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    probe = np.load(probs_file)
    n_classes = 3  # write_esc10's classes, one clip per class and fold
    assert probe["probs_256_80"].shape == (5 * n_classes, n_classes)
    assert np.allclose(probe["probs_256_80"].sum(1), 1)
    # a fake cv folder of five fold models: one confident, right answer per clip, except that
    # fold 1's models put all their weight on class 0
    folder = tmp_path / "cv"
    folds, labels, paths = probe["folds"], probe["labels"], probe["paths"]
    jobs = [f"test{f}" for f in range(1, 6)]
    folder.mkdir()
    (folder / "cv_summary.json").write_text(json.dumps({"jobs_planned": jobs}))
    for f, job in zip(range(1, 6), jobs):
        inside = folds == f
        p = np.eye(n_classes)[labels[inside]] if f != 1 else np.eye(n_classes)[np.zeros(inside.sum(), int)]
        (folder / job).mkdir()
        # another copy of the data set, elsewhere: only class folder / file name must match
        np.savez(folder / job / "predictions.npz", test_probs=p, test_labels=labels[inside],
                 classes=np.array(["a", "b", "c"]), test_paths=np.array(["/elsewhere/" + "/".join(Path(s).parts[-2:]) for s in paths[inside]]))
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "late_fusion.py"), str(folder),
                          "--other", str(probs_file), "--weight", "0.5"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:] for line in run.stdout.splitlines()[2:]}
    run_row = rows["1 run(s) averaged"]
    assert run_row[0].strip() == "33.3 / 100.0 / 100.0 / 100.0 / 100.0" and run_row[2].strip() == "2"
    fused = 0.5 * np.eye(n_classes)[np.where(folds == 1, 0, labels)] + 0.5 * probe["probs_256_80"]
    expected_errors = int((fused.argmax(1) != labels).sum())
    assert rows["fused, weight 0.5"][2].strip() == str(expected_errors)
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "late_fusion.py"), str(folder),
                          "--other", str(probs_file), "--key", "probs_1_2"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "probs_256_80" in bad.stderr and "Traceback" not in bad.stderr
    # the other model may be a cv folder too: here one that is right everywhere
    right = tmp_path / "cv_right"
    right.mkdir()
    (right / "cv_summary.json").write_text(json.dumps({"jobs_planned": jobs}))
    for f, job in zip(range(1, 6), jobs):
        inside = folds == f
        (right / job).mkdir()
        np.savez(right / job / "predictions.npz", test_probs=np.eye(n_classes)[labels[inside]],
                 test_labels=labels[inside], classes=np.array(["a", "b", "c"]), test_paths=paths[inside])
    for weight, errors in (("0.4", "2"), ("0.6", "0")):  # fold 1: the run's wrong class 0 outweighs, then not
        run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "late_fusion.py"), str(folder),
                              "--other", str(right), "--weight", weight], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        rows = {line.split("|")[1].strip(): line.split("|")[2:] for line in run.stdout.splitlines()[2:]}
        assert rows["cv_right [cv run]"][2].strip() == "0" and rows[f"fused, weight {weight}"][2].strip() == errors


def test_members_scores_each_member_and_recomputes_the_trained_ensemble(tiny_esc10, tmp_path):
    from soundformer.cv import run_cv
    from soundformer.data.sources import load_manifest

    from .test_train import tiny_cfg

    cfg = tiny_cfg("train.epochs=2", "model.ensemble=[log,pcen]", "train.mutual_learning=1")
    summary = run_cv(cfg, load_manifest(tiny_esc10), tmp_path / "cv", protocol="standard", progress=False,
                     log=lambda _: None)

    def members(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "members.py"), *args, str(tmp_path / "cv")],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})

    out = members()
    assert out.returncode == 0, out.stderr
    header, _, row = out.stdout.strip().splitlines()
    assert header.startswith("| run | log member | pcen member | ensemble |")
    cells = [c.strip() for c in row.strip("|").split("|")]
    log_acc, pcen_acc, ensemble, disagree, oracle = (float(c.rstrip(" %")) for c in cells[1:])
    assert ensemble == pytest.approx(100 * summary["test_acc_mean"], abs=0.01)  # the members' average, as trained
    assert max(log_acc, pcen_acc) <= oracle <= 100 and 0 <= disagree <= 100
    # a run stopped after fold 1: only test1 is scored, each fold's errors member by member
    (tmp_path / "cv" / "cv_summary.json").unlink()
    out = members("--folds", "1", "--per-fold")
    assert out.returncode == 0, out.stderr
    fold_table = out.stdout.strip().split("\n\n")[1].splitlines()
    assert fold_table[0] == "| run | fold | log member errors | pcen member errors | ensemble errors | clips |"
    assert len(fold_table) == 3  # header, rule, fold 1
    run, job, log_errors, pcen_errors, ensemble_errors, clips = (c.strip() for c in fold_table[2].strip("|").split("|"))
    fold1 = json.loads((tmp_path / "cv" / "test1" / "summary.json").read_text())
    assert job == "test1" and int(ensemble_errors) == round((1 - fold1["test_acc"]) * int(clips))
    assert 0 <= int(log_errors) <= int(clips) and 0 <= int(pcen_errors) <= int(clips)
    (tmp_path / "cv" / "test1").rename(tmp_path / "cv" / "val1")  # a report-protocol job reads the same
    report = members("--folds", "1", "--per-fold")
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip().split("\n\n")[1].splitlines()[2] == fold_table[2].replace("test1", "val1")
    missing = members("--folds", "1,9")
    assert missing.returncode == 1 and "no checkpoints/model.pt for test9" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_tta_crop_row_matches_the_trained_eval_crops_and_adds_the_report_ensemble(tiny_esc10, tmp_path):
    from soundformer.cv import run_cv
    from soundformer.data.sources import load_manifest

    from .test_train import tiny_cfg

    # one-second clips in one-second windows: the benchmark's "first window" is the whole clip
    cfg = tiny_cfg("train.epochs=2", "audio.window_seconds=1.0", "model.ensemble=[]", "augment.crop_fraction=0.6",
                   "train.eval_crops=2")
    summary = run_cv(cfg, load_manifest(tiny_esc10), tmp_path / "cv", protocol="report", progress=False,
                     log=lambda _: None)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tta.py"), str(tmp_path / "cv"), "--hops", "1.0",
                          "--rolls", "", "--crops", "2", "--position-scales", "1,0"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    header, _, *rows = out.stdout.strip().splitlines()
    assert header.endswith("| mean | ensemble |")  # every report fold model tests on fold 5
    table = {r.split("|")[1].strip(): [float(c) for c in r.strip("|").split("|")[1:]] for r in rows}
    trained = [json.loads((tmp_path / "cv" / job / "summary.json").read_text())["test_acc"]
               for job in summary["jobs_planned"]]
    for row in ("every window 50/50 with the mean of 2 crops (train.eval_crops=2)",
                "first window 50/50 with the mean of 2 crops"):  # the same here: one window per clip
        assert table[row][:4] == pytest.approx([round(100 * a, 1) for a in trained], abs=0.051)
        assert 0 <= table[row][5] <= 100
    assert len(table["hop 1"]) == 6
    assert table["whole windows, token positions x1"] == table["hop 1"]  # the probe at 1 is the plain evaluation
    assert all(0 <= a <= 100 for a in table["whole windows, token positions x0"])


def test_crop_energy_counts_the_crops_that_miss_a_padded_event(tmp_path):
    import numpy as np
    import soundfile as sf

    rate, n = 16000, 80000  # the preset's 5-s window: 3-s crops (48,000 samples), 201 starts every 160
    square = np.where(np.arange(n) % 2 == 0, 0.5, -0.5).astype(np.float32)
    burst = square.copy()
    burst[8000:] = 0  # half a second of sound, then padding silence
    for name, clip in (("burst", burst), ("steady", square)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for take in range(2):
            sf.write(tmp_path / "data" / name / f"{take}.wav", clip, rate, subtype="FLOAT")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "crop_energy.py"), str(tmp_path / "data"),
                          "--min-energy", "0.5"], capture_output=True, text=True, check=True).stdout
    rows = {line.split(" | ")[0][2:]: line for line in out.splitlines() if line.startswith("| ")}
    # burst: a crop starting at s holds 8,000 - s samples of it, so it holds under a share q of the
    # loudest crop when s > 8,000 (1 - q): 151, 155, 163 and 175 of 201 starts for q = 0.01, 0.1,
    # 0.25, 0.5; min_energy 0.5 keeps the 26 starts up to 4,000
    assert rows["burst"] == "| burst | 2 | 75.1 % | 77.1 % | 81.1 % | 87.1 % | 12.9 % |"
    assert rows["steady"] == "| steady | 2 | 0.0 % | 0.0 % | 0.0 % | 0.0 % | 100.0 % |"
    assert rows["all"].startswith("| all | 4 | 37.6 % |")


VARIANT_FILES = sorted((ROOT / "benchmarks" / "variants").glob("*.txt"))


@pytest.mark.parametrize("path", VARIANT_FILES, ids=[p.name for p in VARIANT_FILES])
def test_every_variants_file_names_unique_variants_with_valid_settings(path):
    # these files wait for a lent GPU, whose minutes a typo would waste: each line must give a config
    names = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, *args = line.split()
        names.append(name)
        assert len(args) % 2 == 0, f"{path.name}: {line!r}"
        protocol, overrides = "standard", []
        for flag, value in zip(args[::2], args[1::2]):
            assert flag in ("--set", "--protocol"), f"{path.name}: {flag} in {line!r}"
            if flag == "--set":
                overrides.append(value)
            else:
                protocol = value
        load_config("logmel-transformer", overrides, protocol=protocol)  # raises on an unknown key or bad value
    assert names and len(names) == len(set(names)), f"{path.name}: {names}"


def test_lowpass_probe_reproduces_the_recorded_calls_and_adds_a_column_per_cutoff(tiny_esc10, tmp_path):
    import numpy as np

    from soundformer.cv import run_cv
    from soundformer.data.sources import load_manifest

    from .test_train import tiny_cfg

    cfg = tiny_cfg("train.epochs=2", "model.ensemble=[]")
    summary = run_cv(cfg, load_manifest(tiny_esc10), tmp_path / "cv", protocol="standard", progress=False,
                     log=lambda _: None)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lowpass_probe.py"), str(tmp_path / "cv"),
                          "--cutoffs", "1000,3000"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| class | as recorded | low-passed at 1000 Hz | low-passed at 3000 Hz |"
    right = total = 0
    for job in summary["jobs_planned"]:
        d = np.load(tmp_path / "cv" / job / "predictions.npz")
        right += int((d["test_probs"].argmax(1) == d["test_labels"]).sum())
        total += len(d["test_labels"])
    last = [c.strip() for c in rows[-1].strip("|").split("|")]
    assert last[0] == "all" and float(last[1].rstrip(" %")) == pytest.approx(100 * right / total, abs=0.006)
    assert all(0 <= float(c.rstrip(" %")) <= 100 for c in last[2:])
    assert len(rows) == 1 + len(load_manifest(tiny_esc10).classes) + 1  # header, one row per class, all
