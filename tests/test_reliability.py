"""Bad input, crashes and hostile files: each ends in a clear message, nothing is lost."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soundformer import checkpoint, load_model
from soundformer.cli import main
from soundformer.data.audio import decode
from soundformer.features import LogMel

from .conftest import tone, write_esc10

TINY = ["audio.window_seconds=0.5", "model.dim=32", "model.depth=1", "model.heads=2", "model.mlp_dim=32",
        "model.channels=[8,16]", "train.batch_size=4", "train.threads=1"]


def _args(*extra):
    out = list(extra)
    for kv in TINY:
        out += ["--set", kv]
    return out


@pytest.fixture(scope="module")
def model_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("m")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOUNDFORMER_CACHE", str(root / "cache"))
    data = write_esc10(root / "d")
    assert main(["train", "--data", str(data), "--epochs", "1", "--quiet", "--out", str(root / "r"), *_args()]) == 0
    mp.undo()
    return root / "r" / "checkpoints" / "model.pt"


@pytest.mark.parametrize("make", [
    pytest.param(lambda p: sf.write(p, np.zeros(16000, np.float32), 16000), id="silence"),
    pytest.param(lambda p: sf.write(p, np.stack([tone(0, 0.5, 8000)] * 8, 1), 8000), id="8-channels"),
    pytest.param(lambda p: sf.write(p, tone(1, 0.3, 192000), 192000), id="192kHz"),
    pytest.param(lambda p: sf.write(p, tone(1, 0.5, 8000), 8000), id="8kHz"),
    pytest.param(lambda p: sf.write(p, tone(2, 0.05, 16000), 16000), id="0.05s"),
])
def test_odd_but_valid_audio_is_classified(model_ckpt, tmp_path, make):
    path = tmp_path / "x.wav"
    make(path)
    pred = load_model(model_ckpt).predict_file(path)
    assert np.isfinite(pred.probs).all() and pred.probs.sum() == pytest.approx(1, abs=1e-5)


def test_ten_minute_clip(model_ckpt, tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "long.flac", (0.1 * rng.standard_normal(600 * 8000)).astype(np.float32), 8000)
    pred = load_model(model_ckpt).predict_file(tmp_path / "long.flac")
    assert pred.duration_s == pytest.approx(600, abs=0.01)
    assert len(pred.window_probs) == 1200  # 0.5-s windows


@pytest.mark.parametrize("name, make, reason", [
    ("text.wav", lambda p: p.write_text("hello, I am text"), "cannot decode"),
    ("empty.wav", lambda p: sf.write(p, np.zeros(0, np.float32), 8000), "zero samples"),
    ("inf.wav", lambda p: sf.write(p, np.full(100, np.inf, np.float32), 8000, subtype="FLOAT"), "NaN or infinite"),
    ("cut.mp3", lambda p: p.write_bytes(_mp3_bytes()[:200]), "cannot decode|zero samples"),
])
def test_bad_audio_for_predict(model_ckpt, tmp_path, capsys, name, make, reason):
    path = tmp_path / name
    make(path)
    sf.write(tmp_path / "good.wav", tone(0, 0.5, 16000), 16000)
    code = main(["predict", "--checkpoint", str(model_ckpt), str(path), str(tmp_path / "good.wav")])
    out = capsys.readouterr()
    assert code == 1 and "good.wav" in out.out  # the good file still got its answer
    assert re.search(reason, out.err) and str(path) in out.err and "Traceback" not in out.err


def _mp3_bytes() -> bytes:
    import io
    buf = io.BytesIO()
    sf.write(buf, tone(0, 2.0, 16000), 16000, format="MP3")
    return buf.getvalue()


def test_missing_file_named_in_csv(tmp_path, capsys):
    for i in range(4):
        sf.write(tmp_path / f"{i}.wav", tone(i % 2, 0.5, 8000), 8000)
    rows = ["path,label"] + [f"{i}.wav,{'ab'[i % 2]}" for i in range(4)] + ["gone.wav,a"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    code = main(["train", "--data", str(tmp_path / "m.csv"), "--epochs", "1", "--quiet", "--out",
                 str(tmp_path / "r"), *_args("--set", "data.k_folds=2")])
    err = capsys.readouterr().err
    assert code == 2 and "gone.wav: file not found" in err and "--skip-bad" in err


def test_disk_full_is_detected_before_training(tmp_path, capsys, monkeypatch):
    import shutil

    data = write_esc10(tmp_path / "d")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    code = main(["train", "--data", str(data), "--epochs", "1", "--quiet", "--out", str(tmp_path / "r"), *_args()])
    err = capsys.readouterr().err
    assert code == 2 and "MiB free" in err
    assert not (tmp_path / "r" / "metrics.csv").exists()


def _cmd(data, out, epochs, *extra):
    return [sys.executable, "-m", "soundformer", "train", "--data", str(data), "--epochs", str(epochs), "--quiet",
            "--out", str(out), *_args(*extra)]


def test_ctrl_c_saves_and_resumes(tmp_path):
    data = write_esc10(tmp_path / "d", per_fold=3)
    # epochs on tiny data are fast: many of them, and Ctrl-C as soon as the first checkpoint exists
    # (it is written atomically), so the run cannot finish before the signal lands
    epochs = 300
    proc = subprocess.Popen(_cmd(data, tmp_path / "r", epochs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "r" / "checkpoints" / "last.pt").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    ckpt = checkpoint.load(tmp_path / "r" / "checkpoints" / "last.pt")
    assert 1 <= ckpt["epoch"] < epochs
    resumed = subprocess.run(_cmd(data, tmp_path / "r", epochs, "--resume"),
                             capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "r" / "done").exists()


def test_checkpoint_on_disk_is_always_loadable_after_kill(tmp_path):
    data = write_esc10(tmp_path / "d", per_fold=3)
    for delay in (0.6, 1.1, 1.7):
        out = tmp_path / f"r{delay}"
        proc = subprocess.Popen(_cmd(data, out, 200), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "checkpoints" / "last.pt").exists():
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = checkpoint.load(out / "checkpoints" / "last.pt")
        assert ckpt["epoch"] >= 1 and set(ckpt) >= {"model", "optimizer", "rng", "config"}


# --------------------------------------------------------------------------- property tests


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seconds=st.floats(0.002, 2.0), rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
       channels=st.integers(1, 6))
def test_loading_any_shape_gives_mono_finite_audio(tmp_path, seconds, rate, channels):
    n = max(1, int(seconds * rate))
    rng = np.random.default_rng(n)
    sf.write(tmp_path / "p.wav", (0.3 * rng.standard_normal((n, channels))).astype(np.float32), rate, subtype="FLOAT")
    x = decode(tmp_path / "p.wav", 16000)
    assert x.ndim == 1 and x.dtype == np.float32 and np.isfinite(x).all()
    assert abs(len(x) - n * 16000 / rate) <= 2


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40000), batch=st.integers(1, 3), hop=st.sampled_from([160, 320, 512]))
def test_logmel_shape_and_finiteness(n, batch, hop):
    lm = LogMel(sample_rate=16000, n_fft=1024, hop_length=hop, n_mels=40)
    x = torch.randn(batch, n) * 0.1
    if n < 513:  # torch.stft's constant padding needs more than n_fft / 2 samples
        x = torch.nn.functional.pad(x, (0, 513 - n))
    y = lm(x)
    assert y.shape == (batch, 40, 1 + x.shape[1] // hop) and torch.isfinite(y).all()
    lm.use_matmul_dft = True
    y2 = lm(x)
    assert y2.shape == y.shape and torch.isfinite(y2).all()


def test_manifest_paths_outside_root_need_consent(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    sf.write(outside / "o.wav", tone(0, 0.3), 8000)
    root = tmp_path / "root"
    root.mkdir()
    for i in range(4):
        sf.write(root / f"{i}.wav", tone(i % 2, 0.3), 8000)
    (root / "m.csv").write_text("path,label\n" + "".join(f"{i}.wav,{'ab'[i % 2]}\n" for i in range(4)) + "../outside/o.wav,a\n")
    assert main(["data", "info", "--data", str(root / "m.csv")]) == 2
    assert "points outside" in capsys.readouterr().err
    assert Path(outside / "o.wav").exists()


def test_label_known_only_to_the_test_fold_is_flagged(tmp_path, capsys):
    for i in range(6):
        sf.write(tmp_path / f"{i}.wav", tone(i % 2, 0.5, 8000), 8000)
    sf.write(tmp_path / "odd.wav", tone(2, 0.5, 8000), 8000)
    rows = ["path,label,fold"] + [f"{i}.wav,{'ab'[i % 2]},{i % 3 + 1}" for i in range(6)] + ["odd.wav,zebra,3"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    main(["data", "info", "--data", str(tmp_path / "m.csv")])
    assert "one fold only" in capsys.readouterr().out
    code = main(["train", "--data", str(tmp_path / "m.csv"), "--epochs", "1", "--quiet", "--out", str(tmp_path / "r"),
                 *_args()])
    assert code == 0
    assert "no training clips for class(es) zebra" in capsys.readouterr().out
