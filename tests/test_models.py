import functools
import math

import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from soundformer.config import load_config, preset_names
from soundformer.errors import SoundformerError
from soundformer.evaluate import predict_clips
from soundformer.features import LogMel, apply_mix, draw_mix, time_delta
from soundformer.models import build_model, count_macs, count_parameters
from soundformer.models.attention import MultiHeadSelfAttention
from soundformer.models.cnn import AvgMaxPool2d, pooling_layer
from soundformer.train import window_samples

torch.set_num_threads(2)


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize("heads", [1, 2, 4, 8])
@pytest.mark.parametrize("masked", [False, True])
def test_hand_written_attention_matches_torch(heads, masked):
    torch.manual_seed(heads)
    B, T, D = 3, 7, 32
    x = torch.randn(B, T, D)
    mask = None
    if masked:
        mask = torch.zeros(B, T, dtype=torch.bool)
        mask[0, 5:] = True
        mask[2, 3:] = True
    ours = MultiHeadSelfAttention(dim=D, heads=heads).eval()
    ref = nn.MultiheadAttention(D, heads, batch_first=True).eval()
    with torch.no_grad():  # same weights: torch keeps Q, K, V stacked in in_proj like our qkv
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    y, w = ours(x, key_padding_mask=mask, need_weights=True)
    y_ref, w_ref = ref(x, x, x, key_padding_mask=mask, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, w_ref, atol=1e-5, rtol=1e-5)
    # the fused path (scaled_dot_product_attention) gives the same outputs
    ours.fused = True
    y_fused, w_none = ours(x, key_padding_mask=mask)
    assert w_none is None
    torch.testing.assert_close(y_fused, y, atol=1e-5, rtol=1e-5)
    # and so does calling scaled_dot_product_attention on our projections directly
    q, k, v = ours.qkv(x).split(D, dim=2)
    split = lambda t: t.view(B, T, heads, D // heads).transpose(1, 2)  # noqa: E731
    sdpa = nn.functional.scaled_dot_product_attention(
        split(q), split(k), split(v), attn_mask=None if mask is None else ~mask[:, None, None, :])
    torch.testing.assert_close(ours.proj(sdpa.transpose(1, 2).reshape(B, T, D)), y, atol=1e-5, rtol=1e-5)
    if masked:  # padded keys get no weight
        assert w[0, :, :, 5:].abs().max() == 0


def test_attention_weights_are_distributions():
    att = MultiHeadSelfAttention(dim=16, heads=4)
    _, w = att(torch.randn(2, 5, 16), need_weights=True)
    assert w.shape == (2, 4, 5, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5))


@pytest.mark.parametrize("dim, heads, message", [(30, 4, "not divisible"), (-8, 2, "positive"), (8, 0, "positive")])
def test_impossible_attention_settings(dim, heads, message):
    with pytest.raises(SoundformerError, match=message):
        MultiHeadSelfAttention(dim=dim, heads=heads)


# ---------------------------------------------------------------- log-mel


def test_logmel_matches_librosa():
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=320, n_mels=64,
                                         center=True, pad_mode="constant", power=2.0)
    lm = LogMel(sample_rate=16000, n_fft=1024, hop_length=320, n_mels=64)
    ours = lm.mel(torch.from_numpy(y)[None])[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.max())
    lm.use_matmul_dft = True  # the export path agrees too
    np.testing.assert_allclose(lm.mel(torch.from_numpy(y)[None])[0].numpy(), ref, rtol=1e-3, atol=1e-4 * ref.max())


def test_pcen_matches_librosa_on_a_sound_that_changes_level():
    rng = np.random.default_rng(1)
    t = np.arange(16000 * 6) / 16000
    # noise whose level steps up 20 dB at 2 s, plus a tone from 4 s: PCEN's smoother has work to do
    y = rng.standard_normal(t.size) * np.where(t < 2, 0.01, 0.1) + 0.2 * np.sin(2 * np.pi * 440 * t) * (t > 4)
    y = y.astype(np.float32)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=320, n_mels=64,
                                         center=True, pad_mode="constant", power=2.0)
    ref = librosa.pcen(mel * LogMel.PCEN_SCALE, sr=16000, hop_length=320)
    lm = LogMel(sample_rate=16000, n_fft=1024, hop_length=320, n_mels=64, compression="pcen")
    ours = lm(torch.from_numpy(y)[None])[0].numpy()
    assert ours.shape == ref.shape == (64, 301)
    # librosa's smoother starts from (almost) silence, ours from the first frame held steady, so
    # the two agree once librosa's start has faded (1 - b)**150 = 5e-4
    np.testing.assert_allclose(ours[:, 150:], ref[:, 150:], rtol=2e-3, atol=2e-3 * ref.max())
    quiet, start, loud = ours[:, 40:90].mean(), ours[:, :10].mean(), ours[:, 150:195].mean()
    assert abs(start - quiet) < 0.25 * quiet  # no false onset at the start of a window
    assert ref[:, :10].mean() > 3 * quiet  # (librosa's start reads as a loud onset)
    # the level step is divided out: a second later, the loud noise reads like the quiet noise did
    assert abs(loud - quiet) < 0.25 * quiet
    logmel = LogMel(sample_rate=16000, n_fft=1024, hop_length=320, n_mels=64)(torch.from_numpy(y)[None])[0]
    assert logmel[:, 150:195].mean() - logmel[:, 40:90].mean() > 4  # log-mel keeps it: 20 dB = 4.6 nepers


def test_pcen_parameters_reach_the_frontend_and_match_librosa():
    """features.pcen_*: librosa.pcen's time constant, gain, bias and power, for every PCEN front end."""
    rng = np.random.default_rng(2)
    t = np.arange(16000 * 4) / 16000
    y = (rng.standard_normal(t.size) * np.where(t < 1.5, 0.01, 0.1)).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=320, n_mels=64,
                                         center=True, pad_mode="constant", power=2.0)
    settings = dict(time_constant=0.06, gain=0.8, bias=10.0, power=0.25)  # Lostanlen et al.'s outdoor values
    ref = librosa.pcen(mel * LogMel.PCEN_SCALE, sr=16000, hop_length=320, **settings)
    cfg = load_config("logmel-transformer", [f"features.pcen_{k}={v}" for k, v in settings.items()])
    pcen_member = build_model(cfg, 10).members()[1].frontend.logmel
    ours = pcen_member(torch.from_numpy(y)[None])[0].numpy()
    # a 60-ms smoother forgets its start within 20 frames; compare after that
    np.testing.assert_allclose(ours[:, 20:], ref[:, 20:], rtol=2e-3, atol=2e-3 * ref.max())
    default = build_model(load_config("logmel-transformer"), 10).members()[1].frontend.logmel
    assert np.abs(default(torch.from_numpy(y)[None])[0].numpy()[:, 20:] - ours[:, 20:]).mean() > 0.1
    for bad, name in (("features.pcen_time_constant=0", "pcen_time_constant"), ("features.pcen_gain=1.5", "pcen_gain"),
                      ("features.pcen_power=-1", "pcen_power"), ("features.pcen_bias=0", "pcen_bias")):
        with pytest.raises(SoundformerError, match=name):
            load_config("logmel-transformer", [bad])


def test_pcen_config_is_checked_and_builds_a_pcen_frontend():
    cfg = load_config("logmel-transformer", ["model.ensemble=[]", "features.compression=pcen"])
    model = build_model(cfg, 10)
    assert model.frontend.logmel.pcen is not None
    assert model(torch.randn(2, 16000 * 5)).shape == (2, 10)
    both = build_model(load_config("logmel-transformer", ["model.ensemble=[]", "features.compression=log+pcen"]), 10)
    wav = torch.randn(2, 16000) * 0.1
    feats = both.frontend(wav)  # log-mel and PCEN as two input channels (statistics not fitted: 0 / 1)
    assert feats.shape == (2, 2, 64, 51) and both.frontend.mean.shape == (2, 64, 1)
    kw = dict(sample_rate=16000, n_fft=1024, hop_length=320, n_mels=64)
    torch.testing.assert_close(feats[:, 0], LogMel(**kw)(wav))
    torch.testing.assert_close(feats[:, 1], LogMel(**kw, compression="pcen")(wav))
    assert both(torch.randn(2, 16000 * 5)).shape == (2, 10)
    with pytest.raises(SoundformerError, match="features.compression"):
        load_config("logmel-transformer", ["model.ensemble=[]", "features.compression=cubic"])
    with pytest.raises(SoundformerError, match="augment.eq_db"):
        load_config("logmel-transformer", ["model.ensemble=[]", "features.compression=pcen", "augment.eq_db=6"])


def test_delta_width_adds_each_channels_time_derivative():
    """features.delta_width: the least-squares slope over that many frames (librosa.feature.delta
    with mode="nearest"), as one more input channel after each compressed channel."""
    x = torch.randn(2, 3, 40, dtype=torch.float64)
    for width in (3, 9):
        ref = librosa.feature.delta(x.numpy(), width=width, mode="nearest")
        np.testing.assert_allclose(time_delta(x, width).numpy(), ref, atol=1e-12)
    ramp = torch.arange(20.0).repeat(2, 1)  # a level that rises one unit a frame
    assert torch.allclose(time_delta(ramp, 5)[:, 2:-2], torch.ones(2, 16))  # slope 1 away from the edges
    kw = dict(sample_rate=16000, n_fft=1024, hop_length=320, n_mels=64)
    wav = torch.randn(2, 16000) * 0.1
    one = build_model(load_config("logmel-transformer", ["model.ensemble=[]", "features.delta_width=9"]), 10)
    feats = one.frontend(wav)  # (statistics not fitted: 0 / 1)
    assert feats.shape == (2, 2, 64, 51) and one.frontend.mean.shape == (2, 64, 1)
    torch.testing.assert_close(feats[:, 0], LogMel(**kw)(wav))
    torch.testing.assert_close(feats[:, 1], time_delta(LogMel(**kw)(wav), 9))
    pair = build_model(load_config("logmel-transformer", ["features.delta_width=9"]), 10)  # the preset's pair
    pcen = pair.members()[1].frontend(wav)
    torch.testing.assert_close(pcen[:, 1], time_delta(LogMel(**kw, compression="pcen")(wav), 9))
    both = build_model(load_config("logmel-transformer", ["model.ensemble=[]", "features.compression=log+pcen",
                                                          "features.delta_width=3"]), 10)
    assert both.frontend(wav).shape == (2, 4, 64, 51)  # log, its delta, PCEN, its delta
    logits = pair(torch.randn(2, 16000 * 5))
    logits.sum().backward()
    assert logits.shape == (2, 10) and all(p.grad is not None for p in pair.parameters())
    for bad in ("features.delta_width=4", "features.delta_width=1", "features.delta_width=-3"):
        with pytest.raises(SoundformerError, match="features.delta_width"):
            load_config("logmel-transformer", [bad])
    with pytest.raises(SoundformerError, match="features.delta_width"):
        load_config("logmel-transformer", ["model.ensemble=[]", "features.delta_width=9", "augment.eq_db=6"])


def test_stem_pools_time_per_block():
    """model.pool_time: one factor for every block (the old scalar form still loads) or one per block;
    [4, 2, 2] on a 10-ms hop gives the tokens of [2, 2, 2] on a 20-ms hop."""
    coarse = load_config("logmel-transformer", ["model.ensemble=[]", "model.pool_time=2"])
    assert coarse.model.pool_time == [2]
    fine = load_config("logmel-transformer", ["model.ensemble=[]", "model.pool_time=[4,2,2]",
                                              "features.hop_length=160", "features.n_fft=512"])
    wav = torch.randn(2, 16000 * 5)
    shapes = []
    for cfg in (coarse, fine):
        model = build_model(cfg, 10).eval()
        feats = model.frontend(wav)
        pools = [block.net[-1].kernel_size for block in model.stem.blocks]
        shapes.append((feats.shape[-1], tuple(model.stem(feats).shape), pools))
    assert shapes[0] == (251, (2, 128, 8, 32), [(2, 2)] * 3)
    assert shapes[1] == (501, (2, 128, 8, 32), [(2, 4), (2, 2), (2, 2)])


@pytest.mark.parametrize("kind, peak", [("avg", 0.25), ("max", 1.0), ("avgmax", 1.25)])
def test_stem_pooling_keeps_a_short_event_as_its_kind_says(kind, peak):
    """model.stem_pool: one bright cell in a 2x2 window comes out averaged with its three quiet
    neighbours (avg), whole (max), or as their sum (avgmax); odd edges still make a step."""
    x = torch.zeros(1, 1, 4, 5)
    x[0, 0, 1, 2] = 1.0
    y = pooling_layer(kind, (2, 2))(x)
    assert y.shape == (1, 1, 2, 3)
    assert y[0, 0, 0, 1].item() == pytest.approx(peak)
    assert y.sum().item() == pytest.approx(peak)  # the event lands in one output cell only
    with pytest.raises(ValueError, match="stem pooling must be one of avg, max, avgmax"):
        pooling_layer("median", (2, 2))


@pytest.mark.parametrize("name", ["logmel-transformer", "logmel-cnn"])
@pytest.mark.parametrize("kind", ["max", "avgmax"])
def test_stem_pool_changes_the_stem_not_its_shapes_or_size(name, kind):
    """model.stem_pool reaches every stem block of both log-mel models; maps, token count and
    parameters stay those of average pooling, and the model still exports."""
    base = ["model.ensemble=[]"] if name == "logmel-transformer" else []
    avg = build_model(load_config(name, base), 10).eval()
    other = build_model(load_config(name, base + [f"model.stem_pool={kind}"]), 10).eval()
    expected = nn.MaxPool2d if kind == "max" else AvgMaxPool2d
    assert all(isinstance(b.net[-1], expected) for b in other.stem.blocks)
    assert all(isinstance(b.net[-1], nn.AvgPool2d) for b in avg.stem.blocks)
    wav = torch.randn(2, 16000 * 5)
    feats = avg.frontend(wav)
    assert other.stem(feats).shape == avg.stem(feats).shape
    assert count_parameters(other) == count_parameters(avg)
    with torch.no_grad():
        exported = torch.export.export(other, (wav,))
        torch.testing.assert_close(exported.module()(wav), other(wav), atol=1e-4, rtol=1e-4)


def test_member_stem_pools_give_each_member_its_own_pooling():
    """model.member_stem_pools=[avg, avgmax]: the log-mel member keeps average pooling, the PCEN
    member pools by average plus max; same initial weights as the preset for the same seed (pooling
    has no parameters), so a run with it differs from the preset's in pooling alone."""
    def pools(model):
        return [{type(b.net[-1]) for b in member.stem.blocks} for member in model.models]

    torch.manual_seed(3)
    preset = build_model(load_config("logmel-transformer"), 10).eval()
    torch.manual_seed(3)
    mixed = build_model(load_config("logmel-transformer", ["model.member_stem_pools=[avg,avgmax]"]), 10).eval()
    assert pools(preset) == [{nn.AvgPool2d}, {nn.AvgPool2d}]
    assert pools(mixed) == [{nn.AvgPool2d}, {AvgMaxPool2d}]
    for a, b in zip(preset.state_dict().values(), mixed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    wav = torch.randn(2, 16000 * 5)
    with torch.no_grad():
        assert torch.equal(preset.models[0](wav), mixed.models[0](wav))
        assert not torch.allclose(preset.models[1](wav), mixed.models[1](wav))
    cfg = load_config("logmel-transformer", ["model.member_stem_pools=[max,avg]"])  # in model.ensemble's order
    assert pools(build_model(cfg, 10)) == [{nn.MaxPool2d}, {nn.AvgPool2d}]


@pytest.mark.parametrize("bad, message", [
    (["model.member_stem_pools=[avgmax]"], "one of avg, max, avgmax per member of model.ensemble=\\[log, pcen\\]"),
    (["model.member_stem_pools=[avg,median]"], "per member"),
    (["model.ensemble=[]", "model.member_stem_pools=[avg]"], "per member of model.ensemble=\\[\\]"),
    (["model.stem_pool=max", "model.member_stem_pools=[avg,avgmax]"],
     "model.stem_pool=max has no effect while model.member_stem_pools=\\[avg, avgmax\\]"),
    (["model.ensemble=[log,modulation]", "model.member_stem_pools=[avg,max]"],
     "the modulation member, which has no stem, pooling max: list avg for it"),
])
def test_member_stem_pools_need_one_pooling_per_member(bad, message):
    with pytest.raises(SoundformerError, match=message):
        load_config("logmel-transformer", bad)


@pytest.mark.parametrize("name", ["logmel-transformer", "logmel-cnn"])
def test_stem_kernel_time_lengthens_the_first_convolution_only(name):
    """model.stem_kernel_time=9: the first convolution spans 3 bins by 9 frames (padded to keep the
    map's length), every later one stays 3x3; maps and token count unchanged, 6 more weights per
    filter of the first convolution, and the model still exports."""
    base = ["model.ensemble=[]"] if name == "logmel-transformer" else []
    short = build_model(load_config(name, base), 10).eval()
    long = build_model(load_config(name, base + ["model.stem_kernel_time=9"]), 10).eval()
    first = long.stem.blocks[0].net[0]
    assert first.kernel_size == (3, 9) and first.padding == (1, 4)
    assert all(b.net[0].kernel_size == (3, 3) for b in long.stem.blocks[1:])
    assert short.stem.blocks[0].net[0].kernel_size == (3, 3)
    wav = torch.randn(2, 16000 * 5)
    feats = short.frontend(wav)
    assert long.stem(feats).shape == short.stem(feats).shape
    extra = count_parameters(long)[0] - count_parameters(short)[0]
    assert extra == first.out_channels * first.in_channels * 3 * 6
    with torch.no_grad():
        exported = torch.export.export(long, (wav,))
        torch.testing.assert_close(exported.module()(wav), long(wav), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["logmel-transformer", "logmel-cnn"])
def test_strided_first_convolution_reads_a_finer_hop_into_the_same_map(name):
    """model.stem_stride=2 on a 10-ms hop: the first convolution steps 2 frames, so every later map
    (and the token count) is that of the 20-ms hop, and the MACs barely change."""
    base = ["model.ensemble=[]"] if name == "logmel-transformer" else []
    coarse = build_model(load_config(name, base), 10).eval()
    fine = build_model(load_config(name, base + ["features.hop_length=160", "features.n_fft=512",
                                                 "model.stem_stride=2"]), 10).eval()
    first = fine.stem.blocks[0].net[0]
    assert first.stride == (1, 2) and all(b.net[0].stride == (1, 1) for b in fine.stem.blocks[1:])
    wav = torch.randn(2, 16000 * 5)
    f_coarse, f_fine = coarse.frontend(wav), fine.frontend(wav)
    assert f_fine.shape[-1] == 2 * f_coarse.shape[-1] - 1
    assert fine.stem(f_fine).shape == coarse.stem(f_coarse).shape
    assert count_parameters(fine) == count_parameters(coarse)
    assert abs(count_macs(fine, 80000) / count_macs(coarse, 80000) - 1) < 0.01
    assert fine(wav).shape == (2, 10)


@pytest.mark.parametrize("name", ["logmel-transformer", "seed-transformer-h2"])
def test_readout_mean_averages_every_output_token(name):
    """model.readout=mean: the clip embedding is the mean of the encoder's output tokens (CLS
    included) instead of the CLS token's output; same weights, so only the readout differs."""
    base = ["model.ensemble=[]"] if name == "logmel-transformer" else ["audio.window_seconds=1"]
    torch.manual_seed(0)
    cls_model = build_model(load_config(name, base), 10).eval()
    mean_model = build_model(load_config(name, base + ["model.readout=mean"]), 10).eval()
    mean_model.load_state_dict(cls_model.state_dict())  # the readout adds no parameters
    outputs = []
    mean_model.encoder.norm.register_forward_hook(lambda mod, inp, out: outputs.append(out))
    wav = torch.randn(3, int(16000 * load_config(name, base).audio.window_seconds))
    with torch.no_grad():
        feats = mean_model.frontend(wav)
        embedding, _ = mean_model.embed_features(feats)
        tokens = outputs[-1]  # (B, 1 + T, D) after the final norm
        torch.testing.assert_close(embedding, tokens.mean(dim=1))
        cls_embedding, _ = cls_model.embed_features(feats)
        torch.testing.assert_close(cls_embedding, tokens[:, 0])
        assert not torch.allclose(embedding, cls_embedding)
    with pytest.raises(SoundformerError, match="model.readout"):
        load_config(name, base + ["model.readout=max"])


def test_position_scale_zero_makes_the_encoder_blind_to_token_order():
    """The tta probe's knob: with every token at position 0 the encoder is a function of the set
    of tokens (CLS output unchanged when they are shuffled); with positions it is not."""
    from soundformer.models.transformer import CLSEncoder

    torch.manual_seed(0)
    enc = CLSEncoder(dim=16, depth=2, heads=2, mlp_dim=32).eval()
    tokens = torch.randn(2, 7, 16)  # (B, T, D)
    shuffled = tokens[:, torch.randperm(7)]
    with torch.no_grad():
        ordered = (enc(tokens)[0] - enc(shuffled)[0]).abs().max()
        enc.position_scale = 0.0
        blind = (enc(tokens)[0] - enc(shuffled)[0]).abs().max()
    assert ordered > 1e-3 and blind < 1e-5


def test_ensemble_config_is_checked_and_builds_one_model_per_frontend():
    cfg = load_config("logmel-transformer", ["model.ensemble=[log,pcen]", "model.depth=1"])
    model = build_model(cfg, 10)
    first, second = model.members()
    assert first.frontend.logmel.pcen is None and second.frontend.logmel.pcen is not None
    single = build_model(load_config("logmel-transformer", ["model.depth=1", "model.ensemble=[]"]), 10)
    assert count_parameters(model)[0] == 2 * count_parameters(single)[0]
    model.eval()
    wav = torch.randn(3, 16000) * 0.1
    with torch.no_grad():
        mean = (first(wav).softmax(-1) + second(wav).softmax(-1)) / 2
        torch.testing.assert_close(model(wav).softmax(-1), mean)  # logits = log of the mean probability
    for bad, message in ((["model.ensemble=[log]"], "two or more"), (["model.ensemble=[log,cubic]"], "two or more"),
                         (["model.ensemble=[log,pcen]", "augment.eq_db=6"], "eq_db"),
                         (["features.compression=pcen"], "has no effect while model.ensemble")):
        with pytest.raises(SoundformerError, match=message):
            load_config("logmel-transformer", bad)
    with pytest.raises(SoundformerError, match="only log-mel models"):
        load_config("seed-cnn", ["model.ensemble=[log,pcen]"])


def test_modulation_features_match_the_probe_and_find_the_beat():
    import sys
    from pathlib import Path

    from soundformer.features import ModulationSpectrum

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from modulation_probe import modulation_features

    sr, n = 16000, 16000 * 4
    t = np.arange(n) / sr
    noise = np.random.default_rng(0).standard_normal(n)
    beating = (noise * (1 + 0.9 * np.sin(2 * np.pi * 20 * t))).astype(np.float32) * 0.1  # loudness beats at 20 Hz
    spectrum = ModulationSpectrum(sample_rate=sr, bands=8, bins=12, window_seconds=0.032, hop_seconds=0.005)
    ours = spectrum(torch.from_numpy(beating)[None])[0].numpy()
    assert ours.shape == (spectrum.n_features,) == (8 * 11 + 16,)
    reference = modulation_features(beating, sample_rate=sr, n_fft=512, hop=80, bands=8, bins=12, with_spectrum=True)
    taper_energy = np.square(np.hanning(1 + n // 80)).sum()  # ours divides the power by it
    np.testing.assert_allclose(ours[: 8 * 11], reference[: 8 * 11] - np.log(taper_energy), atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(ours[8 * 11:], reference[8 * 11:], atol=2e-3, rtol=1e-3)
    edges = np.geomspace(0.5, 100, 12)  # 0.5 Hz to the 200-Hz frame rate's Nyquist frequency
    beat_bin = int(np.searchsorted(edges, 20)) - 1
    per_band = ours[: 8 * 11].reshape(8, 11)
    assert (per_band.argmax(1) == beat_bin).all()  # every band's loudness beats at 20 Hz
    steady = spectrum(torch.from_numpy((noise * 0.1).astype(np.float32))[None])[0, : 8 * 11].reshape(8, 11)
    assert (per_band[:, beat_bin] > steady[:, beat_bin].numpy() + 3).all()  # e^3: 20x the power of steady noise
    # any length: half the sound gives about the same features (the power is per unit of taper energy)
    half = spectrum(torch.from_numpy(beating[: n // 2])[None])[0, : 8 * 11].reshape(8, 11).numpy()
    assert (half.argmax(1) == beat_bin).all()
    assert np.abs(half[:, beat_bin] - per_band[:, beat_bin]).max() < 0.5


def test_modulation_member_config_is_checked_and_joins_the_ensemble():
    from soundformer.models import ModulationLinear

    cfg = load_config("logmel-transformer", ["model.ensemble=[log,pcen,modulation]", "model.depth=1"])
    model = build_model(cfg, 10)
    *spectrogram_models, modulation = model.members()
    assert len(spectrogram_models) == 2 and isinstance(modulation, ModulationLinear)
    assert count_parameters(modulation)[0] == (16 * 15 + 32) * 10 + 10  # one linear layer on 272 features
    model.eval()
    wav = torch.randn(2, window_samples(cfg)) * 0.1
    with torch.no_grad():
        mean = torch.stack([m(wav).softmax(-1) for m in model.members()]).mean(0)
        torch.testing.assert_close(model(wav).softmax(-1), mean)
    alone = build_model(load_config("logmel-transformer", ["model.ensemble=[]", "model.name=modulation_linear"]), 10)
    assert isinstance(alone, ModulationLinear)
    for bad, message in ((["model.ensemble=[log,log]"], "different members"),
                         (["model.ensemble=[log,modulation]", "model.name=modulation_linear"], "builds members"),
                         (["model.ensemble=[log,modulation]", "features.modulation_hop=0"], "modulation_hop"),
                         (["model.ensemble=[log,modulation]", "features.modulation_window=9"], "modulation_window"),
                         (["model.ensemble=[]", "model.name=modulation_linear", "features.modulation_bins=1"],
                          "modulation_bins")):
        with pytest.raises(SoundformerError, match=message):
            load_config("logmel-transformer", bad)


def test_train_step_masks_only_spectrograms_and_every_member_learns():
    from soundformer.train import TrainStep

    cfg = load_config("logmel-transformer", ["model.ensemble=[log,modulation]", "model.depth=1",
                                             "audio.window_seconds=1.0"])
    model = build_model(cfg, 3)
    loss, _, _ = TrainStep(model, cfg)(torch.randn(4, 16000) * 0.1, torch.eye(3)[[0, 1, 2, 0]])
    loss.backward()
    for member in model.members():
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in member.head.parameters())


@functools.cache
def preset_loss():
    """The loss ``logmel-transformer`` trains with (``train.loss``; binary cross-entropy since the
    forty-fifth session), so these step tests follow the preset whichever loss it names; read once."""
    from soundformer.train import LOSSES

    return LOSSES[load_config("logmel-transformer").train.loss]


def test_train_step_gives_each_ensemble_member_its_own_loss():
    from soundformer.train import TrainStep

    cfg = load_config("logmel-transformer", ["model.ensemble=[log,pcen]", "model.depth=1", "augment.mixup_alpha=0",
                                             "augment.freq_masks=0", "augment.time_masks=0", "augment.gain_db=0",
                                             "model.dropout=0", "model.drop_path=0"])
    model = build_model(cfg, 3).eval()  # eval: no dropout / BN batch statistics, so the numbers repeat
    wav, target = torch.randn(4, 16000) * 0.1, torch.eye(3)[[0, 1, 2, 0]]
    loss, logits, soft = TrainStep(model, cfg)(wav, target)
    alone = [preset_loss()(m(wav), target) for m in model.members()]
    torch.testing.assert_close(loss, alone[0] + alone[1])
    torch.testing.assert_close(logits, model.members()[0](wav))  # the first member's, for the accuracy
    loss.backward()
    for member in model.members():  # every member learns
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in member.head.parameters())


def test_waveform_mixup_gives_every_member_the_same_mixture():
    from soundformer.features import mix_waveforms
    from soundformer.train import TrainStep

    cfg = load_config("logmel-transformer", ["model.ensemble=[log,pcen]", "model.depth=1", "augment.mixup_alpha=0.4",
                                             "augment.mixup_domain=waveform", "augment.freq_masks=0",
                                             "augment.time_masks=0", "augment.gain_db=0", "model.dropout=0",
                                             "model.drop_path=0"])
    model = build_model(cfg, 3).eval()
    wav, target = torch.randn(4, 16000) * 0.1, torch.eye(3)[[0, 1, 2, 0]]
    torch.manual_seed(0)
    loss, _, soft = TrainStep(model, cfg)(wav, target)
    torch.manual_seed(0)
    mixed, expected_soft = mix_waveforms(wav, target, alpha=0.4)  # the same draw
    torch.testing.assert_close(soft, expected_soft)
    assert not torch.equal(soft, target)
    torch.testing.assert_close(loss, sum(preset_loss()(m(mixed), expected_soft) for m in model.members()))


def mixed_pair_step(setting: str, *, seed: int):
    """One TrainStep of a small log-mel + PCEN pair with mixup (alpha 0.4) and ``setting``, every other
    random augmentation and dropout off, in eval mode (so the numbers repeat), after seeding ``seed``:
    (model, wav, target, (loss, logits, soft targets))."""
    from soundformer.train import TrainStep

    cfg = load_config("logmel-transformer", ["model.ensemble=[log,pcen]", "model.depth=1", "augment.mixup_alpha=0.4",
                                             "augment.freq_masks=0", "augment.time_masks=0", "augment.gain_db=0",
                                             "model.dropout=0", "model.drop_path=0", setting])
    model = build_model(cfg, 3).eval()
    wav, target = torch.randn(6, 16000) * 0.1, torch.eye(3)[[0, 1, 2, 0, 1, 2]]
    torch.manual_seed(seed)
    return model, wav, target, TrainStep(model, cfg)(wav, target)


def test_mutual_learning_adds_each_members_kl_to_the_others_and_shares_the_mixup_draw():
    from soundformer.train import mutual_kl

    model, wav, target, (loss, _, soft) = mixed_pair_step("train.mutual_learning=0.5", seed=1)
    torch.manual_seed(1)
    lam, perm = draw_mix(6, alpha=0.4)  # one draw, applied to each member's own features
    members = model.members()
    mixed = [apply_mix(m.frontend(wav), target, lam, perm) for m in members]
    logits = [m.head(m.embed_features(feats)[0]) for m, (feats, _) in zip(members, mixed)]
    torch.testing.assert_close(soft, mixed[0][1])
    torch.testing.assert_close(mixed[0][1], mixed[1][1])  # both members learn the same soft targets
    expected_kl = sum(F.kl_div(F.log_softmax(a, -1), F.softmax(b, -1).detach(), reduction="batchmean")
                      for a, b in ((logits[0], logits[1]), (logits[1], logits[0])))
    torch.testing.assert_close(mutual_kl(logits), expected_kl)
    assert expected_kl > 0  # two differently initialised members disagree
    torch.testing.assert_close(loss, sum(preset_loss()(x, mixed[0][1]) for x in logits) + 0.5 * expected_kl)
    # the KL pulls a member towards the others (a gradient on its logits) and is zero when they agree
    x = logits[0].detach().requires_grad_()
    mutual_kl([x, logits[1].detach()]).backward()
    assert x.grad.abs().sum() > 0
    assert mutual_kl([logits[0].detach(), logits[0].detach()]) < 1e-6


def test_mutual_learning_needs_an_ensemble_and_a_non_negative_weight():
    with pytest.raises(SoundformerError, match=r"model.ensemble"):
        load_config("logmel-transformer", ["model.ensemble=[]", "train.mutual_learning=1"])
    with pytest.raises(SoundformerError, match=r"train.mutual_learning is a loss weight"):
        load_config("logmel-transformer", ["train.mutual_learning=-1"])


def test_member_mixup_domains_mix_each_member_where_it_is_told():
    from soundformer.features import mix_waveforms

    model, wav, target, (loss, logits, soft) = mixed_pair_step("augment.member_mixup_domains=[waveform,features]", seed=2)
    torch.manual_seed(2)  # the same draws, in the same order: the log member's mixture, then the PCEN member's mix
    mixed_wav, wav_soft = mix_waveforms(wav, target, alpha=0.4)
    lam, perm = draw_mix(6, alpha=0.4)
    log_member, pcen_member = model.members()
    pcen_feats, feat_soft = apply_mix(pcen_member.frontend(wav), target, lam, perm)
    expected = [log_member(mixed_wav), pcen_member.head(pcen_member.embed_features(pcen_feats)[0])]
    torch.testing.assert_close(logits, expected[0])
    torch.testing.assert_close(soft, wav_soft)  # the first member's targets: those of its own mixture
    assert not torch.equal(wav_soft, feat_soft)  # two draws: the members learn different mixtures
    criterion = preset_loss()
    torch.testing.assert_close(loss, criterion(expected[0], wav_soft) + criterion(expected[1], feat_soft))


def test_time_cutmix_takes_a_span_of_frames_from_a_partner_and_labels_it_by_its_share():
    from soundformer.features import time_cutmix

    B, M, T = 64, 3, 50
    x = torch.arange(B, dtype=torch.float32)[:, None, None].expand(B, M, T).clone()  # every frame of example b holds b
    y = torch.eye(B)  # example b's own one-hot label
    torch.manual_seed(0)
    out, soft = time_cutmix(x, y)
    assert out.shape == x.shape and torch.allclose(soft.sum(1), torch.ones(B))
    shares = []
    for b in range(B):
        taken = out[b, 0] != b  # (T,) frames that came from the partner
        assert torch.equal(out[b], out[b, :1].expand(M, T))  # a span of whole frames: every mel bin alike
        if taken.any():
            first, last = taken.nonzero()[[0, -1], 0].tolist()
            assert taken[first:last + 1].all()  # one contiguous span
            partner = int(out[b, 0, first])
            assert torch.all(out[b, 0, taken] == partner)
            assert torch.isclose(soft[b, partner], taken.float().mean())  # labelled by its share of the frames
            assert torch.isclose(soft[b, b], 1 - taken.float().mean())
        shares.append(1 - soft[b, b].item())
    assert min(shares) < 0.2 and max(shares) > 0.8  # spans of every length, 0-100 % of the frames
    four_d, _ = time_cutmix(torch.randn(4, 2, M, T), torch.eye(4))  # (B, C, M, T): two-channel front-ends
    assert four_d.shape == (4, 2, M, T)


def test_cutmix_prob_switches_a_members_batch_from_mixup_to_time_cutmix():
    from soundformer.features import time_cutmix
    from soundformer.train import TrainStep

    model, wav, target, (loss, logits, soft) = mixed_pair_step("augment.cutmix_prob=1", seed=3)
    torch.manual_seed(3)  # the same draws, member by member: the switch, then the cut
    expected_loss, firsts = 0.0, []
    for member in model.members():
        torch.rand(())  # the member's switch draw (under 1 always: CutMix)
        feats, member_soft = time_cutmix(member.frontend(wav), target)
        member_logits = member.head(member.embed_features(feats)[0])
        expected_loss = expected_loss + preset_loss()(member_logits, member_soft)
        firsts.append((member_logits, member_soft))
    torch.testing.assert_close(logits, firsts[0][0])
    torch.testing.assert_close(soft, firsts[0][1])
    torch.testing.assert_close(loss, expected_loss)
    assert not torch.equal(firsts[0][1], firsts[1][1])  # each member cuts its own spans
    # cutmix_prob=0 (the default) leaves mixup exactly as it was: no extra random draw
    base = ["model.ensemble=[log,pcen]", "model.depth=1", "augment.mixup_alpha=0.4", "augment.freq_masks=0",
            "augment.time_masks=0", "augment.gain_db=0", "model.dropout=0", "model.drop_path=0"]
    torch.manual_seed(4)
    loss0, _, soft0 = TrainStep(model, load_config("logmel-transformer", base))(wav, target)
    torch.manual_seed(4)
    lam, perm = draw_mix(6, alpha=0.4)  # the first draw is mixup's
    torch.testing.assert_close(soft0, lam[:, None] * target + (1 - lam[:, None]) * target[perm])
    torch.manual_seed(4)
    loss_half, _, _ = TrainStep(model, load_config("logmel-transformer", base + ["augment.cutmix_prob=0.5"]))(wav, target)
    assert not torch.equal(loss0, loss_half)  # the switch draws: the same seed gives other batches


def test_cutmix_prob_needs_a_share_a_log_mel_model_and_the_features_domain():
    for bad, message in ((["augment.cutmix_prob=1.5"], r"in \[0, 1\]"),
                         (["augment.cutmix_prob=-0.1"], r"in \[0, 1\]"),
                         (["augment.cutmix_prob=0.5", "augment.mixup_domain=waveform"], "features domain"),
                         (["augment.cutmix_prob=0.5", "train.mutual_learning=1"], "features domain"),
                         (["augment.cutmix_prob=0.5", "augment.member_mixup_domains=[waveform,features]"],
                          "features domain")):
        with pytest.raises(SoundformerError, match=message):
            load_config("logmel-transformer", bad)
    with pytest.raises(SoundformerError, match="only the log-mel models"):
        load_config("seed-cnn", ["augment.cutmix_prob=0.5"])
    assert load_config("logmel-transformer", ["augment.cutmix_prob=0.5"]).augment.cutmix_prob == 0.5
    assert load_config("logmel-transformer").augment.cutmix_prob == 0  # off by default


def test_member_mixup_domains_need_one_domain_per_member():
    for bad, message in ((["augment.member_mixup_domains=[waveform]"], "one of features, waveform per member"),
                         (["augment.member_mixup_domains=[waves,features]"], "per member"),
                         (["model.ensemble=[]", "augment.member_mixup_domains=[waveform]"], "per member"),
                         (["augment.member_mixup_domains=[waveform,features]", "train.mutual_learning=1"],
                          "train.mutual_learning shares one mixup draw"),
                         (["augment.member_mixup_domains=[waveform,features]", "augment.mixup_alpha=0"],
                          "mixup is off")):
        with pytest.raises(SoundformerError, match=message):
            load_config("logmel-transformer", bad)
    cfg = load_config("logmel-transformer", ["augment.member_mixup_domains=[features,waveform]"])
    assert cfg.augment.member_mixup_domains == ["features", "waveform"]


# ---------------------------------------------------------------- every preset


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: (load_config(name), build_model(load_config(name), 10)) for name in preset_names()}


@pytest.mark.parametrize("name", preset_names())
@pytest.mark.parametrize("batch", [1, 3])
def test_forward_shapes(models, name, batch):
    cfg, model = models[name]
    model.eval()
    n = window_samples(cfg)
    with torch.no_grad():
        assert model(torch.randn(batch, n)).shape == (batch, 10)


@pytest.mark.parametrize("name", preset_names())
def test_any_clip_length_is_classified(models, name):
    cfg, model = models[name]
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(int(s * cfg.audio.sample_rate)).astype(np.float32) * 0.1 for s in (0.3, 1.0, 5.0, 7.3)]
    n = window_samples(cfg)
    probs = predict_clips(model, clips, window=n, hop=n)
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


@pytest.mark.parametrize("name", [n for n in preset_names() if n.startswith("logmel")])
def test_logmel_models_take_several_lengths(models, name):
    cfg, model = models[name]
    model.eval()
    for seconds in (1.0, 2.5, 5.0, 8.0):
        with torch.no_grad():
            assert model(torch.randn(2, int(seconds * cfg.audio.sample_rate))).shape == (2, 10)


@pytest.mark.parametrize("name", preset_names())
def test_backward_gives_finite_gradients_everywhere(models, name):
    cfg, model = models[name]
    model.train()
    model.zero_grad()
    loss = model(torch.randn(3, window_samples(cfg)) * 0.1).logsumexp(-1).mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", preset_names())
def test_torch_export(models, name):
    cfg, model = models[name]
    model.eval()
    x = torch.randn(2, window_samples(cfg))
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), atol=1e-4, rtol=1e-4)


def test_report_parameter_counts(models):
    assert count_parameters(models["seed-cnn"][1]) == (2_591_498, 0)
    trainable, frozen = count_parameters(models["seed-transformer-h1"][1])
    assert frozen == 0 and trainable == 48_491_594  # report: 48,467,946 (see docs/ARCHITECTURE.md)
    assert count_parameters(models["seed-transformer-h4"][1]) == (trainable, 0)  # heads split, not add


def test_macs_are_counted(models):
    cfg, model = models["seed-cnn"]
    macs = count_macs(model, window_samples(cfg))
    # conv MACs: 16000*32*3 + 8000*64*32*3 + 4000*128*64*3, linear 256000*10
    expected = 16000 * 32 * 3 + 8000 * 64 * 32 * 3 + 4000 * 128 * 64 * 3 + 256000 * 10
    assert macs == expected


def test_seed_transformer_channels_layout_needs_matching_dim():
    cfg = load_config("seed-transformer-h1", ["model.dim=64"])
    model = build_model(cfg, 10)
    assert model(torch.randn(1, 16000)).shape == (1, 10)  # a projection 2000 -> 64 is added
    with pytest.raises(SoundformerError, match="at least 2 classes"):
        build_model(cfg, 1)


def test_random_crops_cut_each_clip_at_its_own_start():
    from soundformer.features import random_crops

    torch.manual_seed(0)
    wav = torch.arange(1000, dtype=torch.float32).repeat(64, 1)  # (64, 1000) ramps
    out = random_crops(wav, length=300)
    assert out.shape == (64, 300)
    starts = out[:, 0].long()
    for row, s in zip(out, starts.tolist()):
        assert torch.equal(row, wav[0, s : s + 300])  # one contiguous stretch of the clip
    assert 0 <= starts.min() and starts.max() <= 700 and len(set(starts.tolist())) > 10
    assert torch.equal(random_crops(wav, length=1000), wav) and torch.equal(random_crops(wav, length=2000), wav)


def test_time_shift_rolls_each_clip_within_its_limit():
    from soundformer.features import time_shift

    torch.manual_seed(0)
    wav = torch.arange(1000, dtype=torch.float32).repeat(64, 1)  # (64, 1000) ramps
    out = time_shift(wav, max_fraction=0.1)
    shifts = (out[:, 0] != 0).long() * ((1000 - out[:, 0].long()) % 1000)  # out[0] = in[-shift]
    for row, s in zip(out, shifts.tolist()):
        assert torch.equal(row, torch.roll(wav[0], s))  # a pure circular shift, nothing lost
    signed = [s if s <= 500 else s - 1000 for s in shifts.tolist()]
    assert max(abs(s) for s in signed) <= 100
    assert len(set(signed)) > 10  # each clip draws its own shift
    assert torch.equal(time_shift(wav, max_fraction=0.0), wav)


def test_speed_perturb_reads_each_clip_at_its_own_bounded_speed():
    from soundformer.features import speed_perturb

    torch.manual_seed(0)
    wav = torch.arange(1000, dtype=torch.float32).repeat(64, 1)  # (64, 1000) ramps: value = position
    out = speed_perturb(wav, max_change=0.1)
    speeds = out[:, 1] - out[:, 0]  # output sample t reads position speed x t
    assert speeds.min() >= 0.9 - 1e-4 and speeds.max() <= 1.1 + 1e-4
    assert speeds.std() > 0.03  # each clip draws its own speed
    t = torch.arange(800, dtype=torch.float32)
    assert torch.allclose(out[:, :800], speeds[:, None] * t, atol=1e-2)  # linear, before any wrap
    assert out.shape == wav.shape and out.max() <= 999  # a fast clip wraps round: the window stays full
    assert torch.equal(speed_perturb(wav, max_change=0.0), wav)


def test_random_lowpass_cuts_the_top_of_the_band_of_a_chosen_share():
    from soundformer.features import random_lowpass

    t = torch.arange(16000) / 16000
    low = torch.sin(2 * math.pi * 500 * t)  # below any cutoff
    high = torch.sin(2 * math.pi * 4000 * t)  # two octaves above a 1-kHz cutoff
    wav = (low + high).repeat(200, 1)  # (200, N)

    def level_db(x, hz):  # each row's level at one frequency, relative to the input's
        bins = torch.fft.rfft(x).abs()[:, hz]  # 1-Hz bins: a 1-s window
        return 20 * torch.log10(bins / torch.fft.rfft(wav[:1]).abs()[0, hz])

    torch.manual_seed(0)
    out = random_lowpass(wav, prob=0.5, sample_rate=16000, min_hz=1000.0, max_hz=1000.0, atten_db=40.0)
    cut = level_db(out, 4000) < -39  # the band-limited rows: 4 kHz attenuated by the full 40 dB
    assert 70 < cut.sum() < 130  # about half the rows
    assert torch.allclose(out[~cut], wav[~cut])  # the others untouched
    assert level_db(out[cut], 500).abs().max() < 0.01  # the band below the cutoff passes as it was
    # a cutoff drawn between 1 and 8 kHz: 4 kHz is cut, partly cut or kept, clip by clip
    torch.manual_seed(0)
    spread = level_db(random_lowpass(wav, prob=1.0, sample_rate=16000, min_hz=1000.0, max_hz=8000.0,
                                     atten_db=40.0), 4000)
    assert spread.min() < -39 and spread.max() > -0.01 and ((spread < -1) & (spread > -39)).any()
    assert torch.equal(random_lowpass(wav, prob=0.0, sample_rate=16000, min_hz=1000.0, max_hz=8000.0,
                                      atten_db=40.0), wav)


def test_mix_waveforms_gives_each_sound_its_label_share_of_the_mixture():
    from soundformer.features import mix_waveforms

    t = torch.arange(16000) / 16000
    quiet = 0.01 * torch.sin(2 * math.pi * 440 * t)
    loud = 0.1 * torch.sin(2 * math.pi * 1000 * t)  # 20 dB louder, orthogonal to quiet
    wav = torch.stack([quiet, loud])  # (2, N)
    y = torch.eye(2)
    for seed in range(20):
        torch.manual_seed(seed)
        mixed, soft = mix_waveforms(wav, y, alpha=0.4)
        assert torch.allclose(soft.sum(1), torch.ones(2)) and (soft.diagonal() >= 0.5).all()
        if soft[0, 0] == 1:  # drew itself as partner: the same sound, at most 3 dB louder
            gain = mixed[0].norm() / quiet.norm()
            assert torch.allclose(mixed[0], gain * quiet, atol=1e-6) and 1 <= gain <= 2 ** 0.5 + 1e-4
            continue
        # mixed[0] = a * quiet + b * loud: the quiet sound is boosted to r of the heard (RMS) mixture
        a, b = torch.linalg.lstsq(wav.T, mixed[0][:, None]).solution[:, 0]
        r = soft[0, 0]
        assert torch.isclose(a * quiet.pow(2).mean().sqrt() / (b * loud.pow(2).mean().sqrt()), r / (1 - r), rtol=1e-3)
    torch.manual_seed(0)
    x, y = torch.randn(32, 1000), torch.eye(4)[torch.randint(0, 4, (32,))]
    mixed, soft = mix_waveforms(x, y, alpha=0.4)
    assert mixed.shape == x.shape and torch.allclose(soft.sum(1), torch.ones(32))
    assert 0.7 < mixed.std() / x.std() < 1.3  # the mixture keeps the clips' level


def test_random_eq_is_a_smooth_bounded_curve_per_clip():
    from soundformer.features import random_eq

    torch.manual_seed(0)
    gain = random_eq(32, 64, max_db=6.0, points=4)  # (32, 64) dB
    assert gain.shape == (32, 64) and gain.abs().max() <= 6.0
    steps = gain.diff(dim=1).abs()
    assert steps.max() <= 2 * 6.0 / (63 / 3) + 1e-5  # linear between knots 21 bins apart
    assert len({round(float(g), 4) for g in gain[:, 0]}) == 32  # each clip its own curve
    # straight between knots: the second difference vanishes away from them
    inner = gain[:, 1:22].diff(dim=1).diff(dim=1)
    assert inner[:, :19].abs().max() < 1e-4


def test_train_step_applies_the_equaliser_in_decibels(monkeypatch):
    """A +6 dB equaliser must move the standardised features by exactly 6 dB / std."""
    import soundformer.train as train_mod

    cfg = load_config("logmel-transformer", ["model.depth=1", "augment.eq_db=6", "model.ensemble=[]", "augment.mixup_alpha=0",
                                             "augment.freq_masks=0", "augment.time_masks=0", "augment.gain_db=0"])
    model = build_model(cfg, n_classes=3)
    model.frontend.std.fill_(2.0)
    seen = {}
    monkeypatch.setattr(train_mod, "random_eq", lambda b, m, **kw: torch.full((b, m), 6.0))
    monkeypatch.setattr(model, "embed_features", lambda feats: (seen.setdefault("f", feats).mean((1, 2))[:, None]
                                                                .expand(-1, 128), None))
    wav = torch.randn(2, 16000)
    train_mod.TrainStep(model, cfg)(wav, torch.eye(3)[:2])
    expected = model.frontend(wav) + 6.0 * math.log(10) / 10 / 2.0
    assert torch.allclose(seen["f"], expected, atol=1e-5)
