import csv
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from soundformer.data.sources import (
    detect_format,
    grouped_stratified_folds,
    load_manifest,
    split_validation,
    stratified_folds,
)
from soundformer.errors import SoundformerError

from .conftest import ESC10, tone


def test_esc10_layout(tiny_esc10):
    m = load_manifest(tiny_esc10)
    assert m.format == "esc10"
    assert m.classes == ["001 - alpha", "002 - beta", "003 - gamma"]
    assert m.folds == [1, 2, 3, 4, 5]
    assert len(m) == 15
    assert all(it.fold == int(it.path.name.split("-")[0]) for it in m.items)


def test_esc50_layout_and_esc10_subset(tiny_esc50):
    full = load_manifest(tiny_esc50)
    assert full.format == "esc50" and full.classes == ["dog", "rain", "airplane", "cat"]
    sub = load_manifest(tiny_esc50, subset="esc10")
    assert sub.classes == ["dog", "rain"]
    assert sorted({it.label for it in sub.items}) == [0, 1]
    assert len(sub) == 10
    assert all(it.fold == int(it.path.name[0]) for it in sub.items)


def test_folder_layout_nested_and_stratified(tiny_folder):
    m = load_manifest(tiny_folder, k_folds=5, split_seed=3)
    assert m.format == "folder" and m.classes == ["alpha", "beta", "gamma"]
    assert len(m) == 15 and not m.folds_given
    for label in range(3):  # 5 clips of each class -> one per fold
        assert sorted(it.fold for it in m.items if it.label == label) == [1, 2, 3, 4, 5]
    again = load_manifest(tiny_folder, k_folds=5, split_seed=3)
    assert [it.fold for it in again.items] == [it.fold for it in m.items]


def test_csv_manifest_with_and_without_folds(tiny_folder):
    rows = [(p.relative_to(tiny_folder).as_posix(), p.parts[-2] if p.parent.name in ("alpha", "beta", "gamma") else p.relative_to(tiny_folder).parts[0])
            for p in sorted(tiny_folder.rglob("*.flac"))]
    with open(tiny_folder / "with_folds.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "fold"])
        for i, (p, label) in enumerate(rows):
            w.writerow([p, label, i % 3 + 1])
    m = load_manifest(tiny_folder / "with_folds.csv")
    assert m.format == "csv" and m.folds == [1, 2, 3] and len(m) == 15
    with open(tiny_folder / "no_folds.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    m2 = load_manifest(tiny_folder / "no_folds.csv", k_folds=3)
    assert m2.folds == [1, 2, 3] and not m2.folds_given


def test_urbansound8k_layout(tmp_path):
    root = tmp_path / "us8k"
    rows = []
    for fold in (1, 2):
        (root / "audio" / f"fold{fold}").mkdir(parents=True)
        for cid, cname in enumerate(["air_conditioner", "car_horn"]):
            name = f"{100 + cid}-0-0-{fold}.wav"
            sf.write(root / "audio" / f"fold{fold}" / name, tone(cid, 0.3), 8000)
            rows.append([name, 100 + cid, 0, 0.3, 1, fold, cid, cname])
    (root / "metadata").mkdir()
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    assert detect_format(root) == "urbansound8k"
    m = load_manifest(root)
    assert m.classes == ["air_conditioner", "car_horn"] and m.folds == [1, 2] and len(m) == 4
    assert all(it.path.exists() for it in m.items)


def test_format_can_be_forced(tiny_esc10):
    m = load_manifest(tiny_esc10, format="folder", k_folds=5)
    assert m.format == "folder" and not m.folds_given


def test_real_esc10_manifest():
    if not ESC10.exists():
        pytest.skip("real ESC-10 not available")
    m = load_manifest(ESC10)
    per_class, per_fold = m.counts()
    assert len(m) == 400 and len(m.classes) == 10
    assert set(per_class.values()) == {40} and dict(per_fold) == {f: 80 for f in range(1, 6)}


@pytest.mark.parametrize("content, message", [
    ("path,label,fold\na.wav,x,0\n", "fold 0 is invalid"),
    ("path,label\na.wav,x\na.wav,y\n", "listed twice"),
    ("file,label\na.wav,x\n", "lacks column.*path"),
    ("path,label\n../outside.wav,x\n", "points outside"),
])
def test_bad_csv_manifests(tmp_path, content, message):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(SoundformerError, match=message):
        load_manifest(tmp_path / "m.csv")


def test_empty_class_folder_is_named(tiny_folder):
    (tiny_folder / "delta").mkdir()
    with pytest.raises(SoundformerError, match="delta holds no audio files"):
        load_manifest(tiny_folder)


def test_missing_path_is_clear(tmp_path):
    with pytest.raises(SoundformerError, match="does not exist"):
        load_manifest(tmp_path / "nowhere")


def test_stratified_folds_balance():
    labels = np.repeat(np.arange(4), 10)
    folds = stratified_folds(labels, 5, seed=0)
    for c in range(4):
        assert np.bincount(folds[labels == c], minlength=6)[1:].tolist() == [2] * 5


def test_grouped_folds_keep_each_recording_on_one_fold():
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 6, size=60)  # 60 recordings of 1-5 clips, 3 classes
    groups = [f"rec{g}" for g, n in enumerate(sizes) for _ in range(n)]
    labels = np.array([g % 3 for g, n in enumerate(sizes) for _ in range(n)])
    folds = grouped_stratified_folds(labels, groups, 5, seed=0)
    assert set(folds.tolist()) == {1, 2, 3, 4, 5}
    for g in set(groups):
        assert len({f for f, h in zip(folds, groups) if h == g}) == 1
    for c in range(3):
        per_fold = np.bincount(folds[labels == c], minlength=6)[1:]
        assert per_fold.max() - per_fold.min() <= sizes.max()  # as even as whole groups allow
    assert not np.array_equal(folds, grouped_stratified_folds(labels, groups, 5, seed=1))


def test_csv_group_column_keeps_recordings_together(tmp_path):
    lines = ["path,label,group"]
    for rec in range(12):
        for take in range(3):
            name = f"r{rec}_{take}.wav"
            (tmp_path / name).write_bytes(b"")
            lines.append(f"{name},{'ab'[rec % 2]},rec{rec}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    m = load_manifest(tmp_path / "m.csv", k_folds=3)
    assert len({it.group for it in m.items}) == 12
    for rec in range(12):
        assert len({it.fold for it in m.items if it.group == f"rec{rec}"}) == 1
    assert sorted(Counter(it.fold for it in m.items).values()) == [12, 12, 12]


def test_validation_split_keeps_groups_together(tiny_esc10):
    m = load_manifest(tiny_esc10)
    train, val = split_validation(m.items, 0.2, seed=0)
    assert val and train and len(train) + len(val) == len(m)
    assert not {it.group for it in train} & {it.group for it in val}
    assert {it.label for it in val} == {0, 1, 2}
