"""Reading finished `soundformer cv` run folders, for the benchmark scripts.

A folder that is still running, was copied without its checkpoints, or is not a cv run at all
ends the script with one line that names it (exit 1), not a traceback. Kept free of torch so
that the table scripts start fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cv_summary(folder: Path | str) -> dict:
    """The run's cv_summary.json, which `soundformer cv` writes last."""
    path = Path(folder) / "cv_summary.json"
    if not path.is_file():
        sys.exit(f"error: {folder} holds no cv_summary.json: not a finished `soundformer cv` run "
                 "(still running, or the wrong folder); give finished run folders")
    return json.loads(path.read_text())


def job_names(folder: Path | str) -> list[str]:
    """The run's fold jobs (test1..., or val1...), in the order they were planned."""
    return list(cv_summary(folder)["jobs_planned"])


def checkpoint_paths(folder: Path | str, test_folds: list[int] | None = None) -> dict[str, Path]:
    """job -> its saved model, for scripts that score the models again. ``test_folds`` (e.g. [1, 2])
    names the folds to read directly (test1/ under the standard protocol, val1/ under the report
    protocol), so a run stopped before its last fold can be scored on the folds it finished;
    None = every job of a finished run."""
    def job_of(k: int) -> str:
        return next((j for j in (f"test{k}", f"val{k}") if (Path(folder) / j).is_dir()), f"test{k}")

    jobs = [job_of(k) for k in test_folds] if test_folds else job_names(folder)
    paths = {job: Path(folder) / job / "checkpoints" / "model.pt" for job in jobs}
    missing = [job for job, path in paths.items() if not path.is_file()]
    if missing:
        sys.exit(f"error: {folder} has no checkpoints/model.pt for {', '.join(missing)} "
                 "(not finished, or copied without checkpoints?); this script scores the saved models again")
    return paths
