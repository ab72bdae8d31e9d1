"""Every `soundformer ...` command in the README runs, on tiny data, as written.

Paths in the README are mapped to tiny generated stand-ins; training commands get a tiny model
and one or two epochs. Commands that need hardware or services this machine lacks (a GPU, a
running Ray cluster, several processes via torchrun) are listed in SKIPPED and tested
elsewhere (test_train.py covers torchrun; test_scale.py covers Ray with a local instance).
"""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundformer.cli import main

from .conftest import tone, write_esc10

README = Path(__file__).resolve().parents[1] / "README.md"
SKIPPED = ("--device cuda", "--address auto", "torchrun", "...", "pip install", "wandb login")
TINY = ["audio.window_seconds=0.5", "model.dim=32", "model.depth=1", "model.heads=2", "model.mlp_dim=32",
        "model.channels=[8,16]", "train.batch_size=4", "train.threads=1", "train.epochs=1"]


def readme_commands() -> list[str]:
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("soundformer ") and not any(s in line for s in SKIPPED):
                commands.append(line)
    return commands


def test_readme_has_the_two_quick_start_commands():
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [ln.split("#")[0].strip() for ln in quick.strip().splitlines()]
    assert lines[0].startswith("make study") and lines[1] == "make test"
    assert "make test" in (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def test_every_readme_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    esc = write_esc10(tmp_path / "esc10", per_fold=1)
    monkeypatch.setenv("SOUNDFORMER_DATA", str(esc))  # commands without --data use the default data set
    mine = tmp_path / "my_sounds"
    for c, name in enumerate(["bird", "car"]):
        (mine / name).mkdir(parents=True)
        for k in range(5):
            sf.write(mine / name / f"{k}.wav", tone(c, 0.6, seed=k), 8000)
    rows = ["path,label"] + [f"my_sounds/{n}/{k}.wav,{n}" for n in ("bird", "car") for k in range(5)]
    (tmp_path / "my_list.csv").write_text("\n".join(rows) + "\n")
    sf.write(tmp_path / "dog.wav", tone(0, 1.0, 16000), 16000)
    sf.write(tmp_path / "long.flac", np.concatenate([tone(0, 3.0, 16000), tone(1, 3.0, 16000)]), 16000)
    (tmp_path / "recordings").mkdir()
    sf.write(tmp_path / "recordings" / "r.ogg", tone(2, 0.8, 22050), 22050, format="OGG")

    commands = readme_commands()
    assert len(commands) >= 10
    ran = []
    for line in commands:
        argv = shlex.split(line.replace("../shared/datasets/esc10", str(esc)))[1:]
        if argv[0] in ("train", "cv", "sweep", "study"):
            for kv in TINY:
                if argv[0] == "sweep" and kv.split("=")[0] in " ".join(argv):
                    continue
                argv += ["--set", kv]
            if argv[0] in ("cv", "sweep"):
                argv += ["--set", "data.k_folds=2"]
        if argv[0] == "data" and argv[1] == "download":
            continue  # needs the internet; tested against a local server in test_download.py
        code = main(argv)
        out = capsys.readouterr()
        assert code == 0, f"`{line}` exited {code}: {out.err[-500:]}"
        ran.append(argv[0])
    assert {"study", "train", "cv", "predict", "export", "embed", "sweep", "data", "summary", "presets"} <= set(ran)
    assert (tmp_path / "model.onnx").exists() and (tmp_path / "embeddings.npz").exists()
    assert (tmp_path / "runs" / "study" / "report" / "report.html").exists()

    # the README's Python snippets, with the placeholders they name filled in
    python_blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(python_blocks) == 2
    api, onnx_snippet = python_blocks
    scope = {"waveform": tone(1, 1.0, 22050), "sample_rate": 22050, "w1": tone(0, 1.0), "w2": tone(1, 0.4)}
    exec(api, scope)
    assert scope["pred"].label in scope["m"].classes
    scope = {}
    exec(onnx_snippet, scope)
    assert capsys.readouterr().out.strip() in scope["meta"]["classes"]


@pytest.mark.parametrize("line", [c for c in readme_commands()])
def test_readme_command_parses(line):
    with pytest.raises(SystemExit) as info:
        main(shlex.split(line)[1:2] + ["--help"])
    assert info.value.code == 0
