import time

import numpy as np
import pytest
import soundfile as sf
import torch

from soundformer.data import audio
from soundformer.data.audio import AudioError, decode, fit_length, load, load_many
from soundformer.data.dataset import WindowDataset, loud_starts

from .conftest import tone


def test_decode_mixes_down_and_resamples(tmp_path):
    stereo = np.stack([tone(0, 1.0, 44100), tone(1, 1.0, 44100)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 44100)
    x = decode(tmp_path / "s.wav", 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 1
    # the mix-down is the channel mean: energy of a 300 Hz + 600 Hz half-and-half mix
    assert np.isfinite(x).all() and 0.05 < np.abs(x).mean() < 0.4


@pytest.mark.parametrize("fmt, ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_formats(tmp_path, fmt, ext):
    sf.write(tmp_path / f"c.{ext}", tone(1, 0.5, 22050), 22050, format=fmt)
    x = decode(tmp_path / f"c.{ext}", 8000)
    assert abs(len(x) - 4000) < 1200  # mp3 adds encoder padding


@pytest.mark.parametrize("writer, reason", [
    (lambda p: p.write_text("this is not audio"), "cannot decode"),
    (lambda p: sf.write(p, np.zeros(0, dtype=np.float32), 8000), "zero samples"),
    (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2], dtype=np.float32), 8000, subtype="FLOAT"), "NaN or infinite"),
    (lambda p: None, "file not found"),
])
def test_bad_files_name_file_and_reason(tmp_path, writer, reason):
    p = tmp_path / "bad.wav"
    writer(p)
    with pytest.raises(AudioError, match=reason) as info:
        decode(p, 8000)
    assert str(p) in str(info.value)


def test_truncated_ogg_is_bad_or_shorter(tmp_path):
    sf.write(tmp_path / "a.ogg", tone(0, 2.0, 8000), 8000, format="OGG")
    data = (tmp_path / "a.ogg").read_bytes()
    (tmp_path / "t.ogg").write_bytes(data[: len(data) // 8])
    try:
        x = decode(tmp_path / "t.ogg", 8000)
    except AudioError as exc:
        assert "t.ogg" in str(exc)
    else:
        assert len(x) < 16000 and np.isfinite(x).all()


def test_fit_length_policies():
    x = np.arange(3, dtype=np.float32)
    assert fit_length(x, 7, "pad").tolist() == [0, 1, 2, 0, 0, 0, 0]
    assert fit_length(x, 7, "loop").tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert len(fit_length(np.ones(10, np.float32), 4)) == 10  # longer clips are left alone


def test_cache_hits_and_misses(tmp_path, monkeypatch):
    p = tmp_path / "c.wav"
    sf.write(p, tone(0, 1.0, 44100), 44100)
    first = load(p, 16000)
    calls = []
    monkeypatch.setattr(audio, "decode", lambda *a, **k: calls.append(a) or first)
    again = load(p, 16000)
    assert calls == [] and np.array_equal(first, again)  # second load read the cache
    load(p, 8000)
    assert len(calls) == 1  # another rate misses the cache
    time.sleep(0.01)
    sf.write(p, tone(1, 1.0, 44100), 44100)  # the file changed: its cache entry is stale
    load(p, 16000)
    assert len(calls) == 2


def test_load_many_collects_bad_files(tmp_path):
    good = tmp_path / "g.wav"
    sf.write(good, tone(0, 0.2), 8000)
    bad = tmp_path / "b.wav"
    bad.write_text("junk")
    result = load_many([good, bad], 8000, progress=False)
    assert result.audio[0] is not None and result.audio[1] is None
    assert len(result.bad) == 1 and result.bad[0][0] == bad


def test_training_crops_come_from_the_clip_filled_to_a_whole_window():
    clip = np.array([1, 2, 3], dtype=np.float32)
    for policy, filled in (("loop", [1, 2, 3, 1, 2, 3, 1]), ("pad", [1, 2, 3, 0, 0, 0, 0])):
        whole = WindowDataset([clip], [4], window=7, short_policy=policy)
        assert whole[0][0].tolist() == filled and whole[0][1].item() == 4
        cropped = WindowDataset([clip], [4], window=7, short_policy=policy, crop=4)
        seen = {tuple(cropped[0][0].tolist()) for _ in range(200)}
        # every 4-sample stretch of the filled window, and nothing else
        assert seen == {tuple(filled[s : s + 4]) for s in range(4)}
    # longer clips: a crop may start anywhere in the clip, not only in its first window
    long = WindowDataset([np.arange(20, dtype=np.float32)], [0], window=7, crop=4)
    assert max(int(long[0][0][0]) for _ in range(300)) == 16


def test_loud_starts_keep_the_crops_that_hold_the_event():
    clip = np.zeros(100, dtype=np.float32)
    clip[10:20] = 1.0  # one event, silence around it
    # 30-sample crops (a grid of one sample): the crop [s, s + 30) holds the whole event when s <= 10
    starts = loud_starts(clip, 30, 1.0, 1)
    assert starts.tolist() == list(range(0, 11))
    half = loud_starts(clip, 30, 0.5, 1)
    assert half.tolist() == list(range(0, 16))  # at least 5 of the 10 loud samples
    assert loud_starts(clip, 30, 0.5, 5).tolist() == [0, 5, 10, 15]  # on the grid
    # a steady sound keeps every start, and a silent clip too (nothing to prefer)
    assert len(loud_starts(np.ones(100, dtype=np.float32), 30, 0.9, 1)) == 71
    assert len(loud_starts(np.zeros(100, dtype=np.float32), 30, 0.9, 1)) == 71


def test_crops_with_min_energy_never_miss_the_event():
    clip = np.zeros(100, dtype=np.float32)
    clip[:10] = 1.0  # the sound fills the start; the rest is padding
    uniform = WindowDataset([clip], [3], window=100, crop=40)
    loud = WindowDataset([clip], [3], window=100, crop=40, min_energy=0.5, energy_hop=4)
    torch.manual_seed(0)
    missed_uniform = sum(float(uniform[0][0].sum()) < 5 for _ in range(300))
    held = [float(loud[0][0].sum()) for _ in range(300)]
    assert missed_uniform > 100  # most uniform crops hold less than half the event
    assert min(held) >= 3  # grid starts 0 and 4 hold >= 5; with under 4 samples of jitter a crop starts at 7 at most
    assert loud[0][1].item() == 3
