"""Export a trained model to ONNX or TorchScript.

The exported graph takes a float32 waveform batch ``(batch, samples)`` at the model's sample
rate and returns logits ``(batch, n_classes)`` (for an ensemble, the log of the members'
mean probability, so softmax gives that mean); log-mel models accept any number of samples
(dynamic batch and time axes), the seed models exactly one window. Long clips are classified
by averaging softmax over windows, as ``soundformer predict`` does; with ``train.eval_crops`` > 0
the predictor also averages each window 50/50 with that many evenly spaced crops of
``crop_samples`` samples, which the metadata records so that other runtimes can do the same.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from .errors import SoundformerError
from .features import LogMel
from .predict import Classifier


def set_matmul_dft(model, on: bool) -> None:
    """Switch every log-mel (each member's, in an ensemble, the modulation model's too) to the DFT-as-matmul path."""
    for module in model.modules():
        if isinstance(module, LogMel):
            module.use_matmul_dft = on


def export(clf: Classifier, fmt: str, out: Path, opset: int = 17) -> dict:
    model = clf.model.cpu().eval()
    dynamic_time = model.any_length
    set_matmul_dft(model, True)  # ONNX-friendly STFT (same numbers)
    example = torch.zeros(2, clf.window)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "classes": clf.classes, "sample_rate": clf.sample_rate, "window_samples": clf.window,
        "dynamic_time": dynamic_time, "input": "waveform (batch, samples) float32, mono",
        "output": "logits (batch, n_classes); softmax for probabilities",
        "eval_crops": clf.cfg.train.eval_crops if clf.crop_samples < clf.window else 0,
        "crop_samples": clf.crop_samples,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "onnx":
                axes = {"waveform": {0: "batch", 1: "samples"} if dynamic_time else {0: "batch"}, "logits": {0: "batch"}}
                torch.onnx.export(model, (example,), str(out), input_names=["waveform"], output_names=["logits"],
                                  dynamic_axes=axes, opset_version=opset, dynamo=False)
                import onnx

                proto = onnx.load(str(out))
                for key, value in meta.items():
                    entry = proto.metadata_props.add()
                    entry.key, entry.value = key, json.dumps(value)
                onnx.save(proto, str(out))
            elif fmt == "torchscript":
                scripted = torch.jit.trace(model, example)
                torch.jit.save(scripted, str(out), _extra_files={"soundformer.json": json.dumps(meta)})
            else:
                raise SoundformerError(f"unknown export format '{fmt}'; choose onnx or torchscript")
    except ImportError as exc:
        raise SoundformerError(f"ONNX export needs the onnx package: pip install 'soundformer[onnx]' ({exc})") from None
    finally:
        set_matmul_dft(model, False)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return meta
