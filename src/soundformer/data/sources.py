"""Data set layouts -> one Manifest of (path, label index, class name, fold).

Supported layouts (auto-detected from a directory, or forced with ``format``):

- ``esc50``: ``audio/*.wav`` + ``meta/esc50.csv`` (``subset="esc10"`` keeps the ESC-10 rows)
- ``esc10``: the original ESC-10 release, class folders ``NNN - Name``, fold = first field
- ``urbansound8k``: ``metadata/UrbanSound8K.csv`` + ``audio/foldN/``
- ``csv``: a CSV manifest ``path,label[,fold][,group]``, paths relative to the CSV's folder
- ``folder``: one folder per class (any nesting below it); folds from a seeded stratified split
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SoundformerError

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus"}
FORMATS = ("esc50", "esc10", "urbansound8k", "csv", "folder")
_ESC10_CLASS_DIR = re.compile(r"^\d{3} - .+")


@dataclass(frozen=True)
class Item:
    path: Path
    label: int
    class_name: str
    fold: int
    group: str  # recordings sharing a group (same source file) stay on one side of a split


@dataclass
class Manifest:
    items: list[Item]
    classes: list[str]
    root: Path
    format: str
    folds_given: bool = True  # False when folds were made by a seeded split
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def folds(self) -> list[int]:
        return sorted({it.fold for it in self.items})

    def select(self, folds: list[int] | set[int]) -> list[Item]:
        wanted = set(folds)
        return [it for it in self.items if it.fold in wanted]

    def counts(self) -> tuple[Counter, Counter]:
        return Counter(it.class_name for it in self.items), Counter(it.fold for it in self.items)


# --------------------------------------------------------------------------- detection


def detect_format(path: Path) -> str:
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise SoundformerError(f"{path} is a file but not a .csv manifest; pass a data folder or a CSV")
    if not path.is_dir():
        raise SoundformerError(f"data path {path} does not exist; pass a data set folder or CSV manifest")
    if (path / "meta" / "esc50.csv").is_file():
        return "esc50"
    if (path / "metadata" / "UrbanSound8K.csv").is_file():
        return "urbansound8k"
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs and all(_ESC10_CLASS_DIR.match(p.name) for p in subdirs):
        return "esc10"
    csvs = sorted(path.glob("*.csv"))
    if not subdirs and len(csvs) == 1:
        return "csv"
    if subdirs:
        return "folder"
    raise SoundformerError(
        f"cannot tell the layout of {path}: expected class folders, meta/esc50.csv, "
        f"metadata/UrbanSound8K.csv or a CSV manifest; use --format to force one"
    )


def load_manifest(
    path: str | Path,
    *,
    format: str = "auto",
    subset: str = "",
    k_folds: int = 5,
    split_seed: int = 0,
    allow_outside_root: bool = False,
) -> Manifest:
    path = Path(path).expanduser()
    if not path.exists():
        raise SoundformerError(f"data path {path} does not exist; pass a data set folder or CSV manifest")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise SoundformerError(f"unknown data format '{fmt}'; choose one of: auto, {', '.join(FORMATS)}")
    if subset and fmt != "esc50":
        raise SoundformerError(f"--subset {subset} applies to the esc50 layout only (this is {fmt})")
    if fmt == "esc50":
        manifest = _load_esc50(path, subset)
    elif fmt == "esc10":
        manifest = _load_esc10(path)
    elif fmt == "urbansound8k":
        manifest = _load_urbansound8k(path)
    elif fmt == "csv":
        csv_path = path if path.is_file() else _single_csv(path)
        manifest = _load_csv(csv_path, k_folds, split_seed, allow_outside_root)
    else:
        manifest = _load_folder(path, k_folds, split_seed)
    if not manifest.items:
        raise SoundformerError(f"no audio files found in {path} ({fmt} layout)")
    if len(manifest.classes) < 2:
        raise SoundformerError(
            f"{path} has {len(manifest.classes)} class(es); classification needs at least 2"
        )
    return manifest


def _single_csv(folder: Path) -> Path:
    csvs = sorted(folder.glob("*.csv"))
    if len(csvs) != 1:
        raise SoundformerError(f"{folder} must hold exactly one CSV manifest, found {len(csvs)}")
    return csvs[0]


def _read_csv(path: Path, required: list[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SoundformerError(f"cannot read CSV {path}: {exc}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise SoundformerError(
            f"{path} lacks column(s) {', '.join(missing)}; its header is: {','.join(header) or '(empty)'}"
        )
    return rows


def _parse_fold(text: str, where: str) -> int:
    try:
        fold = int(float(text))
    except ValueError:
        raise SoundformerError(f"{where}: fold '{text}' is not a number") from None
    if fold < 1:
        raise SoundformerError(f"{where}: fold {fold} is invalid; folds are numbered from 1")
    return fold


def _relabel(rows: list[tuple[Path, str, int, str]], root: Path, fmt: str, folds_given=True) -> Manifest:
    classes = sorted({r[1] for r in rows})
    index = {c: i for i, c in enumerate(classes)}
    items = [Item(p, index[c], c, f, g) for p, c, f, g in rows]
    return Manifest(items, classes, root, fmt, folds_given)


def _load_esc50(root: Path, subset: str) -> Manifest:
    meta = root / "meta" / "esc50.csv"
    rows = _read_csv(meta, ["filename", "fold", "target", "category", "esc10", "src_file"])
    keep = []
    for n, row in enumerate(rows, start=2):
        if subset == "esc10" and row["esc10"].lower() not in ("true", "1"):
            continue
        fold = _parse_fold(row["fold"], f"{meta} line {n}")
        keep.append((int(row["target"]), row["category"], root / "audio" / row["filename"], fold, row["src_file"]))
    if subset == "esc10":  # re-index the kept classes 0..9 in their original target order
        order = sorted({(t, c) for t, c, *_ in keep})
        classes = [c for _, c in order]
    else:
        classes = [c for _, c in sorted({(t, c) for t, c, *_ in keep})]
    index = {c: i for i, c in enumerate(classes)}
    items = [Item(p, index[c], c, f, g) for _, c, p, f, g in keep]
    return Manifest(items, classes, root, "esc50")


def _load_esc10(root: Path) -> Manifest:
    rows = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _ESC10_CLASS_DIR.match(p.name))
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise SoundformerError(f"class folder {class_dir} holds no audio files; remove it or add clips")
        for file in files:
            parts = file.stem.split("-")
            if len(parts) < 2 or not parts[0].isdigit():
                raise SoundformerError(
                    f"{file}: ESC-10 file names start with the fold (e.g. 1-100032-A.ogg); "
                    f"rename it or use --format folder"
                )
            rows.append((file, class_dir.name, _parse_fold(parts[0], str(file)), parts[1]))
    # classes keep the numeric order of their folders ("001 - Dog bark" < "002 - Rain" ...)
    return _relabel(rows, root, "esc10")


def _load_urbansound8k(root: Path) -> Manifest:
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = _read_csv(meta, ["slice_file_name", "fsID", "fold", "classID", "class"])
    found = []
    by_id = {}
    for n, row in enumerate(rows, start=2):
        fold = _parse_fold(row["fold"], f"{meta} line {n}")
        by_id[int(row["classID"])] = row["class"]
        found.append((root / "audio" / f"fold{fold}" / row["slice_file_name"], row["class"], fold, row["fsID"]))
    classes = [by_id[i] for i in sorted(by_id)]
    index = {c: i for i, c in enumerate(classes)}
    items = [Item(p, index[c], c, f, g) for p, c, f, g in found]
    return Manifest(items, classes, root, "urbansound8k")


def _load_csv(path: Path, k_folds: int, seed: int, allow_outside_root: bool) -> Manifest:
    rows = _read_csv(path, ["path", "label"])
    root = path.parent.resolve()
    has_fold = bool(rows) and "fold" in rows[0]
    seen: dict[str, int] = {}
    entries = []
    for n, row in enumerate(rows, start=2):
        where = f"{path} line {n}"
        if not row["path"]:
            raise SoundformerError(f"{where}: empty path")
        if not row["label"]:
            raise SoundformerError(f"{where}: empty label for {row['path']}")
        file = (root / row["path"]).resolve()
        if not allow_outside_root and not file.is_relative_to(root):
            raise SoundformerError(
                f"{where}: {row['path']} points outside the manifest's folder {root}; "
                f"move the file under it or pass --set data.allow_outside_root=true"
            )
        key = str(file)
        if key in seen:
            raise SoundformerError(f"{where}: {row['path']} is listed twice (first on line {seen[key]}); remove the duplicate row")
        seen[key] = n
        fold = _parse_fold(row["fold"], where) if has_fold and row.get("fold", "") != "" else 0
        if has_fold and fold == 0:
            raise SoundformerError(f"{where}: the fold column is empty; fill it or drop the column")
        # an optional group column (e.g. the source recording) keeps related clips on one side of a split
        entries.append((file, row["label"], fold, row.get("group") or key))
    manifest = _relabel(entries, root, "csv", folds_given=has_fold)
    if not has_fold:
        manifest = _with_split_folds(manifest, k_folds, seed)
    return manifest


def _load_folder(root: Path, k_folds: int, seed: int) -> Manifest:
    rows = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for class_dir in class_dirs:
        files = sorted(
            p for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise SoundformerError(f"class folder {class_dir} holds no audio files; remove it or add clips")
        rows.extend((f, class_dir.name, 0, str(f)) for f in files)
    manifest = _relabel(rows, root, "folder", folds_given=False)
    return _with_split_folds(manifest, k_folds, seed)


def _with_split_folds(manifest: Manifest, k: int, seed: int) -> Manifest:
    labels = np.array([it.label for it in manifest.items])
    groups = [it.group for it in manifest.items]
    if len(set(groups)) < len(groups):  # clips of one recording must not straddle test folds
        folds = grouped_stratified_folds(labels, groups, k, seed)
    else:
        folds = stratified_folds(labels, k, seed)
    items = [Item(it.path, it.label, it.class_name, int(f), it.group) for it, f in zip(manifest.items, folds)]
    counts = Counter(labels.tolist())
    small = [manifest.classes[c] for c, n in counts.items() if n < k]
    notes = []
    if small:
        notes.append(f"classes with fewer clips than folds ({k}): {', '.join(small)}; some folds lack them")
    return Manifest(items, manifest.classes, manifest.root, manifest.format, False, notes)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold numbers 1..k, balanced per class, from a seeded shuffle."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        # continue the round robin across classes so small classes do not all land in fold 1
        folds[idx] = (np.arange(len(idx)) + offset) % k + 1
        offset = (offset + len(idx)) % k
    return folds


def grouped_stratified_folds(labels: np.ndarray, groups: list[str], k: int, seed: int) -> np.ndarray:
    """Fold numbers 1..k with every group on one fold, each class spread as evenly as whole
    groups allow: a class's groups, shuffled, then largest first, each go to the fold holding
    the fewest clips of that class so far (then the fewest clips overall)."""
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    by_class: dict[int, list[str]] = {}
    for g, idx in members.items():
        majority = Counter(labels[idx].tolist()).most_common(1)[0][0]
        by_class.setdefault(majority, []).append(g)
    folds = np.zeros(len(labels), dtype=np.int64)
    total = np.zeros(k, dtype=np.int64)
    for label in sorted(by_class):
        keys = sorted(by_class[label])
        rng.shuffle(keys)
        keys.sort(key=lambda g: -len(members[g]))  # stable: equal sizes keep the shuffled order
        in_class = np.zeros(k, dtype=np.int64)
        for g in keys:
            fold = min(range(k), key=lambda f: (in_class[f], total[f]))
            folds[members[g]] = fold + 1
            in_class[fold] += len(members[g])
            total[fold] += len(members[g])
    return folds


def split_validation(items: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Hold out about ``fraction`` of ``items`` per class for validation, whole groups at a time."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    by_class: dict[int, list[Item]] = {}
    for it in items:
        by_class.setdefault(it.label, []).append(it)
    for label in sorted(by_class):
        members = by_class[label]
        groups: dict[str, list[Item]] = {}
        for it in members:
            groups.setdefault(it.group, []).append(it)
        keys = sorted(groups)
        rng.shuffle(keys)
        target = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        taken = 0
        for key in keys:
            if taken < target and len(groups[key]) + taken <= max(target, 1) * 2 and len(keys) > 1:
                val.extend(groups[key])
                taken += len(groups[key])
            else:
                train.extend(groups[key])
    return train, val
