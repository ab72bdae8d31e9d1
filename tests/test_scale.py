"""Scale-out and the runtime: the Ray launcher (local Ray instance), the sweep command, the
thread count, and how a model is placed on a CPU."""

import copy
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from soundformer.cli import main
from soundformer.config import load_config
from soundformer.cv import run_cv
from soundformer.data.sources import load_manifest
from soundformer.models import build_model
from soundformer.runtime import place_model

from .conftest import write_esc10
from .test_train import TINY, metrics


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_launcher_matches_local_and_retries_a_killed_job(ray_local, tmp_path):
    data = write_esc10(tmp_path / "d", per_fold=2)
    m = load_manifest(data)
    cfg = load_config("logmel-transformer", TINY + ["train.epochs=8"])
    local = run_cv(cfg, m, tmp_path / "local", protocol="report", progress=False, log=lambda _: None)

    killed, ray_done = [], threading.Event()

    def kill_one_worker():  # kill -9 the first Ray worker that has started training
        # no fixed deadline: on a loaded machine Ray's workers may take minutes to start
        while not ray_done.is_set() and not killed:
            for job in ("val1", "val2", "val3", "val4"):
                rows = tmp_path / "ray" / job / "metrics.csv"
                if rows.exists() and len(rows.read_text().splitlines()) >= 3:
                    subprocess.run(["pkill", "-9", "-f", "ray::_run_one"], check=False)
                    killed.append(job)
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_one_worker)
    watcher.start()
    logs = []
    try:
        remote = run_cv(cfg, m, tmp_path / "ray", protocol="report", launcher="ray", progress=False, log=logs.append)
    finally:
        ray_done.set()
        watcher.join()
    assert killed, "no worker was killed: the test did not exercise a retry"
    assert any("ray:" in line and "retries" in line for line in logs)
    assert remote["per_job"].keys() == local["per_job"].keys()
    for job in local["per_job"]:
        assert remote["per_job"][job]["test_acc"] == local["per_job"][job]["test_acc"]
        assert metrics(tmp_path / "ray" / job) == metrics(tmp_path / "local" / job)
    assert remote["ensemble_test_acc"] == local["ensemble_test_acc"]


def test_sweep_ranks_by_validation(tmp_path, capsys):
    data = write_esc10(tmp_path / "d", per_fold=1)
    args = ["sweep", "--data", str(data), "--grid", "train.lr=1e-3,1e-5", "--grid", "model.depth=1",
            "--protocol", "standard", "--epochs", "1", "--quiet", "--out", str(tmp_path / "sw")]
    for kv in TINY:
        if not kv.startswith("model.depth"):
            args += ["--set", kv]
    assert main(args) == 0
    rows = json.loads((tmp_path / "sw" / "sweep_summary.json").read_text())
    assert len(rows) == 2 and [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["val_acc_mean"] >= rows[1]["val_acc_mean"]
    for r in rows:
        assert (tmp_path / "sw" / r["point"] / "cv_summary.json").exists()
    assert "ranked by mean validation accuracy" in capsys.readouterr().out


def test_sweep_gives_a_preset_without_validation_a_validation_slice(tmp_path, capsys):
    data = write_esc10(tmp_path / "d", per_fold=1)
    args = ["sweep", "--data", str(data), "--grid", "train.lr=1e-3", "--protocol", "standard", "--epochs", "1",
            "--quiet", "--out", str(tmp_path / "sw")]
    for kv in TINY + ["train.val_fraction=0", "train.select=last"]:
        args += ["--set", kv]
    assert main(args) == 0
    assert "train.val_fraction=0 becomes 0.1" in capsys.readouterr().out
    row = json.loads((tmp_path / "sw" / "sweep_summary.json").read_text())[0]
    assert row["val_acc_mean"] == row["val_acc_mean"]  # not NaN: every point was validated


def test_bad_grid_is_refused_before_training(tmp_path, capsys):
    data = write_esc10(tmp_path / "d", per_fold=1)
    assert main(["sweep", "--data", str(data), "--grid", "model.heads=3", "--out", str(tmp_path / "sw")]) == 2
    assert "not divisible" in capsys.readouterr().err
    assert not list((tmp_path / "sw").glob("*/cv_summary.json"))


def test_threads_are_decided_once_not_from_our_own_load(tmp_path, monkeypatch):
    """A job's own training raises the load average; the next fold must not read that as busy
    cores and drop to fewer threads (this halved the speed of sequential cross-validation)."""
    import soundformer.runtime as runtime

    monkeypatch.setattr(runtime, "_FREE_CORES", None)
    monkeypatch.setattr(runtime, "_busy_cores", lambda: 0.0)
    first = runtime.free_cores()
    monkeypatch.setattr(runtime, "_busy_cores", lambda: 64.0)  # as if our own job were running
    assert runtime.free_cores() == first

    data = write_esc10(tmp_path / "esc10", seconds=0.5)
    cfg = load_config("logmel-cnn", TINY + ["train.epochs=1", "train.threads=0"])
    assert cfg.train.threads == 0  # automatic
    run_cv(cfg, load_manifest(data), tmp_path / "cv", protocol="report", progress=False, log=lambda _: None)
    recorded = {(d / "config.yaml").read_text().split("threads: ")[1].split()[0] for d in (tmp_path / "cv").iterdir()
                if (d / "config.yaml").exists()}
    assert recorded == {str(first)}  # every fold ran with the count decided before the first one


def test_busy_cores_reads_the_cpu_time_spent_between_two_samples(monkeypatch):
    """The load average lags a minute behind; two /proc/stat samples see the load of now."""
    import soundformer.runtime as runtime

    # cpu  user nice system idle iowait irq softirq steal: 400 ticks pass, 100 of them idle
    samples = iter(["cpu  1000 0 0 5000 0 0 0 0\ncpu0 ...", "cpu  1250 0 50 5090 10 0 0 0\ncpu0 ..."])
    monkeypatch.setattr(runtime, "_read_proc_stat", lambda: next(samples))
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 4)
    assert runtime._busy_cores(0.0) == pytest.approx(4 * (1 - 100 / 400))

    def unreadable():
        raise OSError("no /proc here")

    monkeypatch.setattr(runtime, "_read_proc_stat", unreadable)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert runtime._busy_cores(0.0) == 1.5  # falls back to the load average


FAULTS_OF_FREED_LARGE_BLOCKS = """
import resource
import torch
from soundformer.runtime import keep_freed_memory
print(keep_freed_memory())
def step():  # like a training step: large activations made and freed, in the same sizes every time
    torch.ones(16 * 2**20).sum() + torch.ones(17 * 2**20).sum()
for i in range(11):  # the first steps grow the heap; it settles within a few
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    if i >= 4:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_is_reused_without_page_faults():
    """glibc maps every block above 32 MB afresh and unmaps it when freed, so each training step
    page-faulted its 66-MB activations in again; kept in the heap, the memory is reused (the
    heap still grows now and then while it settles, hence the median over seven steps)."""
    def run(**env) -> tuple[str, float]:
        out = subprocess.run([sys.executable, "-c", FAULTS_OF_FREED_LARGE_BLOCKS], capture_output=True, text=True,
                             check=True, env={**os.environ, **env}).stdout.split()
        return out[0], sorted(int(n) for n in out[1:])[3]  # median faults per step

    kept, faults_kept = run()
    system, faults_system = run(SOUNDFORMER_MALLOC="system")
    assert (kept, system) == ("True", "False")
    assert faults_system > 0.9 * 33 * 2**20 * 4 / 4096  # both float32 blocks faulted in again, 4-kB pages
    assert faults_kept < faults_system / 10


def test_place_model_on_cpu_computes_the_same_in_channels_last():
    """The CPU layout changes the order of the sums, not the function (or its gradients)."""
    cfg = load_config("logmel-transformer", ["model.depth=1", "model.dim=32", "model.mlp_dim=64"])
    torch.manual_seed(0)
    plain = build_model(cfg, 3).eval()
    placed = place_model(copy.deepcopy(plain), torch.device("cpu"))
    conv_weights = [p for p in placed.parameters() if p.dim() == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    assert not all(p.is_contiguous() for p in conv_weights)  # (a 1-channel weight is both)
    wav = torch.randn(2, 16000)
    out_plain, out_placed = plain(wav), placed(wav)
    assert torch.allclose(out_plain, out_placed, atol=1e-4)
    out_plain.sum().backward()
    out_placed.sum().backward()
    for p, q in zip(plain.parameters(), placed.parameters(), strict=True):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-4, rtol=1e-3)
    # a checkpoint saved from the placed model loads into a fresh one and gives the same output
    fresh = build_model(cfg, 3).eval()
    fresh.load_state_dict(placed.state_dict())
    assert torch.allclose(fresh(wav), out_placed, atol=1e-4)


def test_sweep_passes_the_shortcut_flags_to_every_point(tmp_path):
    """--skip-bad and --tracker reach each point's config as they reach a cv run's."""
    data = write_esc10(tmp_path / "d", per_fold=1)
    (data / "002 - beta" / "2-999-A.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    args = ["sweep", "--data", str(data), "--grid", "train.lr=1e-3", "--protocol", "standard", "--epochs", "1",
            "--quiet", "--skip-bad", "--tracker", "tensorboard", "--out", str(tmp_path / "sw")]
    for kv in TINY:
        args += ["--set", kv]
    assert main(args) == 0
    configs = [c.read_text() for c in (tmp_path / "sw").glob("*/*/config.yaml")]
    assert len(configs) == 5
    assert all("skip_bad: true" in c and "tracker: tensorboard" in c for c in configs)
