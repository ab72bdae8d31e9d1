"""Sharpness-aware minimisation (SAM; Foret et al., 2021), as an option of the training loop.

A SAM step takes the gradient g at the weights w, moves to w + rho * g / ||g|| (towards the
steepest rise of the loss within a ball of radius rho), takes the gradient there, comes back to
w, and lets the optimiser step with that second gradient: it prefers weights whose whole
neighbourhood has a low loss. With it, Chen et al. (2022) trained vision transformers from
scratch on ImageNet, without pre-training or strong augmentation, past ResNets of their size. It
costs a second forward and backward pass per step.

The training loop replays the same batch for the second pass: same clips, same augmentation
draws (the torch random state is restored), BatchNorm running statistics left alone (the batch
already counted once). For an ensemble, each member is perturbed by its own gradient's norm, as
if it trained alone (like the per-member gradient clipping).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


@torch.no_grad()
def ascend(members: Iterable[torch.nn.Module], rho: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Move each member's weights by rho along its own normalised gradient; return (weight, offset)
    pairs for ``descend``. Gradients may be loss-scaled (fp16): the direction does not depend on the
    scale. A member whose gradient is zero or not finite (an fp16 overflow, which the scaler will
    skip anyway) is left where it is."""
    moved = []
    for member in members:
        params = [p for p in member.parameters() if p.grad is not None]
        if not params:
            continue
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params]))
        if not torch.isfinite(norm) or norm == 0:
            continue
        scale = rho / norm
        for p in params:
            offset = (p.grad.float() * scale).to(p.dtype)
            p.add_(offset)
            moved.append((p, offset))
    return moved


@torch.no_grad()
def descend(moved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Put the weights back where ``ascend`` found them."""
    for p, offset in moved:
        p.sub_(offset)


@contextmanager
def frozen_batchnorm_stats(model: torch.nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with the batch as usual but leave their running statistics
    unchanged (momentum 0), so a replayed batch is not counted twice."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
