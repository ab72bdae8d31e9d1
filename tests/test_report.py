"""The one-command study on a tiny generated data set, and the report it writes."""

import csv
import json
import re
from pathlib import Path

import pytest

from soundformer.cli import main
from soundformer.study import STUDY_PRESETS

from .conftest import write_esc10


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    mp = pytest.MonkeyPatch()
    mp.setenv("SOUNDFORMER_CACHE", str(root / "cache"))
    data = write_esc10(root / "data", per_fold=1)
    out = root / "study"
    code = main(["study", "--data", str(data), "--out", str(out), "--budget", "quick", "--quiet",
                 "--set", "audio.window_seconds=0.25", "--set", "train.threads=2"])
    mp.undo()
    assert code == 0
    return out


def test_every_artefact_exists(study):
    report = study / "report"
    for name in ("report.html", "report.md", "results.json"):
        assert (report / name).stat().st_size > 0
    results = json.loads((report / "results.json").read_text())
    assert set(results["models"]) >= {m for m in results["models"]}
    assert [m["preset"] for m in results["models"].values()] == STUDY_PRESETS
    for name in ("counts", "durations", "examples"):
        assert (report / "figures" / results["data"]["figures"][name]).exists()
    for m in results["models"].values():
        for fig in ("curves", "confusion", "f1", "roc"):
            assert (report / "figures" / m["figures"][fig]).exists()
        if m["preset"] != "seed-cnn" and m["preset"] != "logmel-cnn":
            assert m["attention"] and all((report / "figures" / a["figure"]).exists() for a in m["attention"])
        assert m["params_trainable"] > 0 and m["macs_per_5s_clip"] > 0
        assert "(quick" in m["label"]  # quick-budget models are labelled so


def test_results_agree_with_run_folders(study):
    results = json.loads((study / "report" / "results.json").read_text())
    for m in results["models"].values():
        folder = Path(m["folder"])
        cv = json.loads((folder / "cv_summary.json").read_text())
        assert m["ensemble_test_acc"] == pytest.approx(cv["ensemble_test_acc"])
        assert m["test_acc_mean"] == pytest.approx(cv["test_acc_mean"])
        for job, fold in m["per_fold"].items():
            summary = json.loads((folder / job / "summary.json").read_text())
            assert fold["test_acc"] == summary["test_acc"] and fold["val_acc"] == summary["val_acc"]
            with open(folder / job / "metrics.csv") as fh:
                rows = list(csv.DictReader(fh))
            assert fold["epochs_run"] == len(rows)
            best = int(summary["best_epoch"])
            if summary["selected"].startswith("best"):  # the selected epoch's validation accuracy
                assert float(rows[best - 1]["val_acc"]) == pytest.approx(fold["val_acc"], abs=1e-9)
        n = m["test_metrics"]["n"]
        assert sum(map(sum, m["test_metrics"]["confusion"])) == n
        assert sum(v["support"] for v in m["test_metrics"]["per_class"].values()) == n


def test_html_is_self_contained(study):
    html = (study / "report" / "report.html").read_text()
    srcs = re.findall(r'src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:") for s in srcs)
    assert "<audio" in html or "Listen to the mistakes" not in html
    assert "Comparison" in html and "Attention maps" in html


def test_rerun_skips_finished_jobs(study, capsys):
    code = main(["study", "--data", str(study.parent / "data"), "--out", str(study), "--budget", "quick",
                 "--quiet", "--set", "audio.window_seconds=0.25"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("4 of 4 jobs already done") == len(STUDY_PRESETS)


def test_report_command_on_a_single_run(study, tmp_path):
    run = study / "logmel-transformer" / "val1"
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    (m,) = results["models"].values()
    assert m["protocol"] == "single run" and list(m["per_fold"]) == ["val1"]


def test_report_on_a_folder_without_runs_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 2
    assert "holds no finished runs" in capsys.readouterr().err
