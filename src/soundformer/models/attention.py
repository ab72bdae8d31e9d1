"""Multi-head self-attention, written out by hand, with the fused kernel as an option."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SoundformerError


class MultiHeadSelfAttention(nn.Module):
    """Self-attention over a (B, T, D) sequence with ``heads`` heads of size D / heads.

    The hand-written path spells out every step; ``fused=True`` calls
    ``F.scaled_dot_product_attention`` instead (same result, faster, no weights returned).
    ``key_padding_mask`` is (B, T) with True where a token is padding, as in
    ``nn.MultiheadAttention``.
    """

    def __init__(self, *, dim: int, heads: int, dropout: float = 0.0, fused: bool = False):
        super().__init__()
        if dim <= 0 or heads <= 0:
            raise SoundformerError(f"attention needs positive dim and heads, got dim={dim}, heads={heads}")
        if dim % heads:
            raise SoundformerError(f"attention dim={dim} is not divisible by heads={heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.fused = fused
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)  # Q, K, V projections in one matmul
        self.proj = nn.Linear(dim, dim)  # output projection after the heads are concatenated
        self.attn_drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, D = x.shape
        H, hd = self.heads, self.head_dim
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, T, D)
        q = q.view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        weights = None
        if self.fused and not need_weights:
            allowed = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
            )  # (B, H, T, hd)
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, H, T, T): query x key
            if key_padding_mask is not None:
                scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            weights = scores.softmax(dim=-1)  # each query's weights over the keys sum to 1
            y = self.attn_drop(weights) @ v  # (B, H, T, hd): weighted sum of values
        y = y.transpose(1, 2).reshape(B, T, D)  # concatenate heads -> (B, T, D)
        return self.proj(y), weights
