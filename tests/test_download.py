"""data download against a local HTTP server serving archives built here."""

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import pytest
import soundfile as sf

from soundformer.cli import main
from soundformer.data.download import download, extract_safely
from soundformer.errors import SoundformerError

from .conftest import tone


def esc10_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c, name in enumerate(["Dog bark", "Rain"]):
            for fold in (1, 2):
                wav = io.BytesIO()
                sf.write(wav, tone(c, 0.2), 8000, format="WAV")
                zf.writestr(f"ESC-10-abc/{c + 1:03d} - {name}/{fold}-{c}{fold}-A.wav", wav.getvalue())
    return buf.getvalue()


@pytest.fixture
def server():
    routes: dict[str, tuple[int, bytes, dict]] = {}
    hits: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            status, body, headers = routes.get(self.path, (404, b"missing", {}))
            self.send_response(status)
            self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, routes, hits
    httpd.shutdown()


def test_download_extract_and_rerun_is_noop(server, tmp_path, capsys):
    base, routes, hits = server
    body = esc10_zip()
    routes["/esc10.zip"] = (200, body, {})
    sha = hashlib.sha256(body).hexdigest()
    code = main(["data", "download", "esc10", "--dest", str(tmp_path), "--url", f"{base}/esc10.zip", "--sha256", sha])
    assert code == 0
    target = tmp_path / "esc10"
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == ["001 - Dog bark", "002 - Rain"]
    assert len(list(target.rglob("*.wav"))) == 4
    assert main(["data", "download", "esc10", "--dest", str(tmp_path), "--url", f"{base}/esc10.zip"]) == 0
    assert hits["/esc10.zip"] == 1  # the second call did not download again
    assert [p.name for p in tmp_path.iterdir()] == ["esc10"]  # no temporary leftovers


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    base, routes, _ = server
    routes["/a.zip"] = (200, esc10_zip(), {})
    with pytest.raises(SoundformerError, match="checksum mismatch"):
        download("esc10", tmp_path, url=f"{base}/a.zip", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_truncated_download_retries_then_fails_cleanly(server, tmp_path):
    base, routes, hits = server
    body = esc10_zip()
    routes["/t.zip"] = (200, body[:100], {"Content-Length": str(len(body))})
    with pytest.raises(SoundformerError, match="failed after 2 attempt"):
        download("esc10", tmp_path, url=f"{base}/t.zip", retries=2, progress=False, timeout=5)
    assert hits["/t.zip"] == 2
    assert list(tmp_path.iterdir()) == []


def test_server_error_is_clear(server, tmp_path, capsys):
    base, routes, _ = server
    routes["/e.zip"] = (500, b"boom", {})
    code = main(["data", "download", "esc50", "--dest", str(tmp_path), "--url", f"{base}/e.zip"])
    err = capsys.readouterr().err
    assert code == 2 and "HTTP 500" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.addfile(member, io.BytesIO(data) if data else None)
    return buf.getvalue()


@pytest.mark.parametrize("make", [
    lambda: _tar_with(tarfile.TarInfo("../escape.txt"), b""),
    lambda: _tar_with(tarfile.TarInfo("/abs/escape.txt"), b""),
    lambda: _tar_with(_link("data/link", "/etc/passwd")),
])
def test_hostile_archives_are_refused(tmp_path, make):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(make())
    with pytest.raises(SoundformerError, match="refusing to extract"):
        extract_safely(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_zip_slip_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../evil.txt", "x")
    (tmp_path / "evil.zip").write_bytes(buf.getvalue())
    with pytest.raises(SoundformerError, match="refusing to extract"):
        extract_safely(tmp_path / "evil.zip", tmp_path / "out" / "deep")
    assert not (tmp_path / "evil.txt").exists()


def _link(name, target):
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info
