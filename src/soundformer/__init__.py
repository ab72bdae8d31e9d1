"""soundformer: audio classification with a transformer written from scratch in PyTorch."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def load_model(path, device: str = "cpu"):
    """Load a trained checkpoint for inference: ``load_model("model.pt").predict(wav, sr)``."""
    from .predict import load_model as _load

    return _load(path, device=device)
