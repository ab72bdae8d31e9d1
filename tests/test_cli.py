import json

import pytest

from soundformer.cli import main

from .conftest import ESC10, write_esc10

TINY = ["--set", "audio.window_seconds=0.5", "--set", "model.dim=32", "--set", "model.depth=1",
        "--set", "model.mlp_dim=32", "--set", "model.channels=[8,16]", "--set", "train.batch_size=4"]


def test_help_for_every_command(capsys):
    for cmd in (["--help"], ["train", "--help"], ["cv", "--help"], ["data", "info", "--help"],
                ["data", "download", "--help"], ["summary", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(cmd)
        assert exit_info.value.code == 0
        assert "usage: soundformer" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("soundformer 0.")


def test_data_info_real_esc10(capsys):
    if not ESC10.exists():
        pytest.skip("real ESC-10 not available")
    assert main(["data", "info", "--data", str(ESC10), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clips"] == 400 and info["classes"] == 10
    assert set(info["per_class"].values()) == {40}
    assert info["per_fold"] == {str(f): 80 for f in range(1, 6)} or info["per_fold"] == {f: 80 for f in range(1, 6)}
    assert info["bad_files"] == [] and info["sample_rates"] == {"44100": 400}


def test_data_info_lists_bad_files_and_fails(tiny_esc10, capsys):
    (tiny_esc10 / "001 - alpha" / "1-999-A.wav").write_text("not audio")
    assert main(["data", "info", "--data", str(tiny_esc10)]) == 1
    out = capsys.readouterr().out
    assert "bad files     1" in out and "1-999-A.wav" in out and "cannot decode" in out


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("soundformer: error:") and "does not exist" in err and "Traceback" not in err
    assert main(["summary", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_summary_prints_report_parameter_count(capsys):
    assert main(["summary", "--preset", "seed-cnn"]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters    2,591,498" in out
    assert "non-trainable params    0" in out


def test_summary_describes_the_modulation_model(capsys):
    assert main(["summary", "--preset", "logmel-transformer", "--set", "model.ensemble=[]",
                 "--set", "model.name=modulation_linear"]) == 0
    out = capsys.readouterr().out
    assert "modulation spectra of 16 mel bands at 32/5 ms" in out
    assert "trainable parameters    2,730" in out  # (16 bands x 15 bins + 32 levels) x 10 classes + 10


def test_training_refuses_bad_files_unless_skipped(tiny_esc10, tmp_path, capsys):
    bad = tiny_esc10 / "002 - beta" / "2-999-A.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    args = ["train", "--data", str(tiny_esc10), "--preset", "logmel-transformer", "--epochs", "1", "--quiet", *TINY]
    assert main([*args, "--out", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    assert "1 bad audio file" in err and "2-999-A.wav" in err and "--skip-bad" in err
    assert main([*args, "--out", str(tmp_path / "r2"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipping 1 bad audio file" in out and "2-999-A.wav" in out


def test_presets_prints_a_preset_in_full_with_meanings(tmp_path, capsys):
    from soundformer.config import load_config

    assert main(["presets", "logmel-transformer", "--set", "train.lr=3e-4"]) == 0
    text = capsys.readouterr().out
    assert "  lr: 0.0003  # peak learning rate" in text
    assert "  time_shift: 0.0  # random circular shift" in text
    (tmp_path / "mine.yaml").write_text(text)  # the printout is itself a usable preset file
    printed, wanted = load_config(str(tmp_path / "mine.yaml")).to_dict(), load_config(
        "logmel-transformer", ["train.lr=3e-4"]).to_dict()
    assert {k: v for k, v in printed.items() if k != "name"} == {k: v for k, v in wanted.items() if k != "name"}
    assert main(["presets", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_presets_prints_a_protocol_section_that_survives_a_round_trip(tmp_path, capsys):
    from soundformer.config import load_config

    preset = tmp_path / "mine.yaml"
    preset.write_text("base: logmel-cnn\ntrain: {epochs: 72}\nprotocols:\n  report:\n    train: {epochs: 80}\n")
    assert main(["presets", str(preset)]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    assert load_config(str(printed)).train.epochs == 72
    assert load_config(str(printed), protocol="report").train.epochs == 80
    assert main(["presets", str(preset), "--protocol", "report"]) == 0
    assert "  epochs: 80  # passes over the training clips" in capsys.readouterr().out


def test_cv_trains_with_the_presets_settings_for_its_protocol(tmp_path, capsys):
    data = write_esc10(tmp_path / "d", per_fold=1, seconds=0.5)
    preset = tmp_path / "mine.yaml"
    preset.write_text("base: logmel-cnn\ntrain: {epochs: 1}\nprotocols:\n  report:\n    train: {epochs: 2}\n")
    args = ["cv", "--preset", str(preset), "--data", str(data), "--protocol", "report", "--quiet", *TINY]
    assert main([*args, "--out", str(tmp_path / "cv")]) == 0
    assert "under the report protocol this preset sets train.epochs=2" in capsys.readouterr().out
    runs = [d for d in (tmp_path / "cv").iterdir() if (d / "config.yaml").exists()]
    assert len(runs) == 4
    for run in runs:
        assert "epochs: 2\n" in (run / "config.yaml").read_text()
        assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 2  # header + two epochs
    assert main([*args, "--out", str(tmp_path / "cv1"), "--epochs", "1"]) == 0
    assert "this preset sets" not in capsys.readouterr().out
    assert "epochs: 1\n" in next((tmp_path / "cv1").glob("*/config.yaml")).read_text()  # the flag wins
