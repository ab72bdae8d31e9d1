"""The table tool behind docs/RESULTS.md prints what the run folders hold."""

import json
import subprocess
import sys
from pathlib import Path

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
