import json

import numpy as np
import pytest
import soundfile as sf
import torch

from soundformer import load_model
from soundformer.cli import main
from soundformer.config import load_config
from soundformer.cv import make_split, plan_jobs
from soundformer.data import audio as audio_io
from soundformer.data.sources import load_manifest
from soundformer.train import run_job

from .conftest import tone, write_esc10

TINY = ["audio.window_seconds=0.5", "model.dim=32", "model.depth=1", "model.heads=2", "model.mlp_dim=32",
        "model.channels=[8,16]", "train.batch_size=4", "train.threads=1", "train.epochs=2",
        "features.n_mels=32", "features.hop_length=160"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOUNDFORMER_CACHE", str(root / "cache"))
    data = write_esc10(root / "data")
    m = load_manifest(data)
    out = {}
    variants = {"logmel-transformer": ("logmel-transformer", TINY),  # the preset: a log-mel + PCEN ensemble
                "single": ("logmel-transformer", [*TINY, "model.ensemble=[]"]),
                "seed-cnn": ("seed-cnn", ["audio.window_seconds=0.25", "train.epochs=1", "train.threads=1"]),
                # log-mel and PCEN, each followed by its delta: four input channels
                "pcen": ("logmel-transformer", [*TINY, "model.ensemble=[]", "features.compression=log+pcen",
                                                "features.delta_width=5"]),
                "modulation": ("logmel-transformer", [*TINY, "model.ensemble=[log,modulation]"]),
                "eval-crops": ("logmel-transformer", [*TINY, "model.ensemble=[]", "train.eval_crops=3"])}
    for name, (preset, extra) in variants.items():
        cfg = load_config(preset, extra)
        run_job(cfg, m, make_split(m, plan_jobs(m, "report")[0], cfg), root / name, progress=False)
        out[name] = root / name / "checkpoints" / "model.pt"
    mp.undo()
    return out


def test_python_api(trained):
    clf = load_model(trained["logmel-transformer"])
    assert clf.cfg.features.n_mels == 32 and clf.cfg.features.hop_length == 160  # training settings restored
    stereo = np.stack([tone(0, 1.3, 44100), tone(0, 1.3, 44100)], axis=1)  # (N, 2) at 44.1 kHz
    pred = clf.predict(stereo, 44100)
    assert pred.probs.shape == (3,) and pred.probs.sum() == pytest.approx(1, abs=1e-5)
    assert pred.label in clf.classes and len(pred.top(2)) == 2
    assert pred.window_probs.shape[0] == 3  # 1.3 s in 0.5-s windows: 0, 0.5, 0.8
    batch = clf.predict_batch([tone(1, 0.7, 16000), tone(2, 0.2, 16000)], 16000)
    assert len(batch) == 2
    emb = clf.embed(tone(1, 1.0, 16000), 16000)
    assert emb.shape == (64,) and np.isfinite(emb).all()  # the two members' 32-d embeddings
    single = clf.predict(torch.from_numpy(tone(1, 0.7, 16000)), 16000)
    np.testing.assert_allclose(single.probs, batch[0].probs, atol=1e-6)


def test_predict_cli_json_with_a_bad_file(trained, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", tone(0, 2.0, 22050), 22050)
    sf.write(folder / "sub" / "b.flac", np.stack([tone(1, 0.3, 8000)] * 8, axis=1), 8000)  # 8 channels
    (folder / "broken.wav").write_text("not audio")
    code = main(["predict", "--checkpoint", str(trained["logmel-transformer"]), str(folder), "--format", "json",
                 "--windows", "--top-k", "2"])
    captured = capsys.readouterr()
    assert code == 1  # one file failed
    assert "broken.wav" in captured.err and "Traceback" not in captured.err
    results = {r["path"].split("/")[-1]: r for r in json.loads(captured.out)}
    assert set(results) == {"a.wav", "b.flac", "broken.wav"}
    assert "error" in results["broken.wav"]
    a = results["a.wav"]
    assert len(a["top_k"]) == 2 and abs(sum(a["probabilities"].values()) - 1) < 1e-4
    assert len(a["windows"]) == 4 and a["windows"][-1]["end_s"] == pytest.approx(2.0, abs=1e-3)


def test_predict_cli_table_and_csv(trained, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", tone(2, 1.0, 16000), 16000)
    assert main(["predict", "--checkpoint", str(trained["seed-cnn"]), str(tmp_path / "a.wav")]) == 0
    assert "a.wav:" in capsys.readouterr().out
    assert main(["predict", "--checkpoint", str(trained["seed-cnn"]), str(tmp_path / "a.wav"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("path,label,p_") and len(lines) == 2


def test_embed_cli(trained, tmp_path):
    for k in range(3):
        sf.write(tmp_path / f"{k}.wav", tone(k, 0.6, 16000), 16000)
    out = tmp_path / "e.npz"
    assert main(["embed", "--checkpoint", str(trained["logmel-transformer"]), str(tmp_path), "--out", str(out)]) == 0
    z = np.load(out)
    assert z["embeddings"].shape == (3, 64) and len(z["paths"]) == 3


@pytest.mark.parametrize("preset", ["logmel-transformer", "single", "seed-cnn", "pcen", "modulation"])
def test_onnx_export_matches_pytorch(trained, tmp_path, preset):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(trained[preset]), "--format", "onnx", "--out", str(path)]) == 0
    clf = load_model(trained[preset])
    session = ort.InferenceSession(str(path))
    lengths = [clf.window] if preset == "seed-cnn" else [clf.window, 3000, 16000 * 3 + 17]
    for batch in (1, 3, 5):
        for n in lengths:
            x = torch.randn(batch, n) * 0.1
            ours = session.run(None, {"waveform": x.numpy()})[0]
            with torch.no_grad():
                ref = clf.model(x).numpy()
            np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["classes"] == clf.classes and meta["sample_rate"] == 16000


def test_torchscript_export(trained, tmp_path):
    path = tmp_path / "m.pt"
    assert main(["export", "--checkpoint", str(trained["logmel-transformer"]), "--format", "torchscript",
                 "--out", str(path)]) == 0
    scripted = torch.jit.load(str(path))
    clf = load_model(trained["logmel-transformer"])
    for batch, n in ((1, 8000), (4, 20000)):
        x = torch.randn(batch, n) * 0.1
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), clf.model(x), atol=1e-4, rtol=1e-4)


def test_an_ensemble_checkpoint_predicts_the_mean_of_its_members(trained):
    clf = load_model(trained["logmel-transformer"])
    members = clf.model.members()
    assert [m.frontend.logmel.pcen is not None for m in members] == [False, True]
    # each member's front-end was standardised with its own training statistics
    assert not torch.allclose(members[0].frontend.mean, members[1].frontend.mean)
    wav = tone(1, 1.3, 16000)
    pred = clf.predict(wav, 16000)
    x = torch.from_numpy(wav[None, :8000])
    with torch.no_grad():
        each = [m(x).softmax(-1)[0].numpy() for m in members]
    np.testing.assert_allclose(pred.window_probs[0], np.mean(each, axis=0), atol=1e-5)
    assert clf.embed(wav, 16000).shape == (64,)  # both members' 32-d embeddings side by side
    one = load_model(trained["single"])
    assert one.model.members() == [one.model] and one.embed(wav, 16000).shape == (32,)


def test_eval_crops_average_each_window_with_its_crops(trained):
    clf = load_model(trained["eval-crops"])
    assert clf.cfg.train.eval_crops == 3 and clf.cfg.augment.crop_fraction == 0.6  # saved with the model
    wav = tone(1, 0.5, 16000)  # exactly one 0.5-s window: 8000 samples, crops of 4800 at 0, 1600, 3200
    x = torch.from_numpy(wav[None])
    with torch.no_grad():
        whole = clf.model(x).softmax(-1)[0].numpy()
        crops = [clf.model(x[:, s : s + 4800]).softmax(-1)[0].numpy() for s in (0, 1600, 3200)]
    expected = 0.5 * whole + 0.5 * np.mean(crops, axis=0)
    assert np.abs(expected - whole).max() > 1e-6  # the crops do change the prediction
    np.testing.assert_allclose(clf.predict(wav, 16000).probs, expected, atol=1e-5)
    # cross-validation evaluated its test clips the same way as the predictor does
    saved = np.load(trained["eval-crops"].parent.parent / "predictions.npz")
    again = [p.probs for p in clf.predict_batch([audio_io.decode(f, 16000) for f in saved["test_paths"][:4]], 16000)]
    np.testing.assert_allclose(saved["test_probs"][:4], np.stack(again), atol=1e-5)
    clf.cfg.train.eval_crops = 0  # whole windows only
    np.testing.assert_allclose(clf.predict(wav, 16000).probs, whole, atol=1e-5)
    clf.cfg.train.eval_crops, clf.cfg.augment.crop_fraction = 3, 1.0  # crops of the whole window: no effect
    np.testing.assert_allclose(clf.predict(wav, 16000).probs, whole, atol=1e-5)


def test_predict_cli_eval_crops_overrides_the_model(trained, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", tone(1, 0.5, 16000), 16000)
    args = ["predict", "--checkpoint", str(trained["eval-crops"]), str(tmp_path / "a.wav"), "--format", "json"]
    probs = {}
    for n in ("3", "0"):
        assert main([*args, "--eval-crops", n]) == 0
        probs[n] = json.loads(capsys.readouterr().out)[0]["probabilities"]
    assert main(args) == 0  # the model's own setting: 3
    assert json.loads(capsys.readouterr().out)[0]["probabilities"] == probs["3"] != probs["0"]
    assert main([*args, "--eval-crops", "-1"]) == 2
    assert "--eval-crops is a number of crops" in capsys.readouterr().err
    # the export records the crops so that other runtimes can reproduce the prediction
    assert main(["export", "--checkpoint", str(trained["eval-crops"]), "--format", "torchscript",
                 "--out", str(tmp_path / "m.pt")]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["eval_crops"] == 3 and meta["crop_samples"] == 4800 and meta["window_samples"] == 8000


def test_a_modulation_member_is_fitted_saved_and_predicts(trained):
    clf = load_model(trained["modulation"])
    log_member, modulation = clf.model.members()
    assert type(modulation).__name__ == "ModulationLinear"
    # its standardisation was fitted on the training clips and saved with the checkpoint
    assert modulation.frontend.mean.abs().sum() > 0 and not torch.allclose(modulation.frontend.std, torch.ones(1))
    wav = tone(2, 1.3, 16000)
    pred = clf.predict(wav, 16000)
    x = torch.from_numpy(wav[None, :8000])
    with torch.no_grad():
        each = [m(x).softmax(-1)[0].numpy() for m in (log_member, modulation)]
    np.testing.assert_allclose(pred.window_probs[0], np.mean(each, axis=0), atol=1e-5)
    assert clf.embed(wav, 16000).shape == (32 + modulation.frontend.modulation.n_features,)
