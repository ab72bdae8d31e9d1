"""Download a data set archive: stream with retries, verify size and SHA-256, extract safely to
a temporary folder, then rename it into place atomically. Re-running is a no-op."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import SoundformerError

ESC10_COMMIT = "553c8f1743b9dba6b282e1323c3ca8fa76923448"
ARCHIVES = {
    # name: (url, sha256 or None when the archive is a moving branch, expected layout)
    "esc50": ("https://github.com/karolpiczak/ESC-50/archive/master.zip", None, "esc50"),
    "esc10": (f"https://github.com/karolpiczak/ESC-10/archive/{ESC10_COMMIT}.zip", None, "esc10"),
}
MARKER = ".soundformer-complete"


def download(
    dataset: str, dest: Path, *, name: str | None = None, url: str | None = None,
    sha256: str | None = None, retries: int = 3, progress: bool = True, timeout: float = 60.0,
) -> Path:
    """Fetch ``dataset`` into ``dest/name`` (default name: the data set's) and return that path."""
    if dataset not in ARCHIVES:
        raise SoundformerError(f"unknown data set '{dataset}'; choose one of: {', '.join(ARCHIVES)}")
    default_url, default_sha, layout = ARCHIVES[dataset]
    url, sha256 = url or default_url, sha256 or default_sha
    dest = Path(dest).expanduser()
    final = dest / (name or dataset)
    if (final / MARKER).exists():
        return final
    if final.exists() and any(final.iterdir()):
        raise SoundformerError(f"{final} exists but is not a finished download; remove it or choose another --dest")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SoundformerError(f"cannot create {dest}: {exc.strerror or exc}") from None
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=dest))
    try:
        archive = work / "archive"
        _fetch(url, archive, sha256=sha256, retries=retries, progress=progress, timeout=timeout)
        extracted = work / "extracted"
        extract_safely(archive, extracted)
        root = _single_root(extracted)
        from .sources import detect_format

        found = detect_format(root)
        if found != layout:
            raise SoundformerError(f"the archive from {url} does not hold the {dataset} layout (found {found})")
        (root / MARKER).write_text(f"{url}\n")
        if final.exists():
            final.rmdir()  # an empty folder left by the user
        os.rename(root, final)  # atomic on one file system: the data set appears whole or not at all
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _fetch(url: str, target: Path, *, sha256: str | None, retries: int, progress: bool, timeout: float) -> None:
    from tqdm.auto import tqdm

    last_error = ""
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                expected = response.headers.get("Content-Length")
                expected = int(expected) if expected else None
                digest = hashlib.sha256()
                size = 0
                with open(target, "wb") as fh, tqdm(
                    total=expected, unit="B", unit_scale=True, desc=f"downloading {Path(url).name}",
                    disable=not progress, leave=False,
                ) as bar:
                    while chunk := response.read(1 << 20):
                        fh.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        bar.update(len(chunk))
            if expected is not None and size != expected:
                raise _Retry(f"download truncated: got {size} of {expected} bytes")
            if sha256 and digest.hexdigest() != sha256.lower():
                raise SoundformerError(
                    f"checksum mismatch for {url}: expected SHA-256 {sha256}, got {digest.hexdigest()}. "
                    f"The file is not the one expected; nothing was kept"
                )
            return
        except urllib.error.HTTPError as exc:
            last_error = f"server answered HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500 and exc.code != 429:
                break  # a missing file will not appear on retry
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, _Retry) as exc:
            last_error = str(getattr(exc, "reason", exc))
        if attempt < retries:
            time.sleep(min(2 ** (attempt - 1), 8) * 0.5)
    raise SoundformerError(
        f"download of {url} failed after {retries} attempt(s): {last_error}. "
        f"Check the connection (or proxy) and run the command again; nothing was kept"
    )


class _Retry(Exception):
    pass


def _check_member(name: str, dest: Path) -> Path:
    pure = PurePosixPath(name.replace("\\", "/"))
    if not pure.parts or pure.is_absolute() or ".." in pure.parts or ":" in pure.parts[0]:
        raise SoundformerError(f"refusing to extract '{name}': the archive points outside its folder")
    target = (dest / pure).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise SoundformerError(f"refusing to extract '{name}': the archive points outside its folder")
    return target


def extract_safely(archive: Path, dest: Path) -> None:
    """Extract a zip or tar archive, refusing absolute paths, '..' and links of any kind."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise SoundformerError(f"refusing to extract '{info.filename}': the archive holds a link")
                _check_member(info.filename, dest)
            zf.extractall(dest)
        return
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                if m.issym() or m.islnk():
                    raise SoundformerError(f"refusing to extract '{m.name}': the archive holds a link")
                if not (m.isfile() or m.isdir()):
                    raise SoundformerError(f"refusing to extract '{m.name}': not a regular file or folder")
                _check_member(m.name, dest)
            tf.extractall(dest, members=members, filter="data")
    except tarfile.TarError as exc:
        raise SoundformerError(f"the downloaded archive is damaged or not a zip/tar file: {exc}") from None


def _single_root(folder: Path) -> Path:
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
