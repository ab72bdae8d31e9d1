"""Transformer encoder pieces: MLP, Block, positions, and a CLS-token encoder."""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import MultiHeadSelfAttention


class MLP(nn.Module):
    def __init__(self, *, dim: int, hidden: int, dropout: float, activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))  # (B, T, D)


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per example while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p  # (B, 1, 1)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Attention + feed-forward, each with a residual connection and layer norm.

    ``norm_first=True`` is pre-norm (x + f(norm(x)), stable for deep/wide models);
    False is the original post-norm (norm(x + f(x))), as in the report.
    """

    def __init__(
        self, *, dim: int, heads: int, mlp_dim: int, dropout: float, attn_dropout: float,
        drop_path: float, norm_first: bool, fused: bool, activation: type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim=dim, heads=heads, dropout=attn_dropout, fused=fused)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim=dim, hidden=mlp_dim, dropout=dropout, activation=activation)
        self.drop = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, key_padding_mask=None, need_weights=False):
        if self.norm_first:
            y, w = self.attn(self.norm1(x), key_padding_mask, need_weights)
            x = x + self.drop_path(self.drop(y))  # (B, T, D)
            x = x + self.drop_path(self.mlp(self.norm2(x)))  # (B, T, D)
        else:
            y, w = self.attn(x, key_padding_mask, need_weights)
            x = self.norm1(x + self.drop_path(self.drop(y)))
            x = self.norm2(x + self.drop_path(self.mlp(x)))
        return x, w


def sinusoidal_positions(length: int, dim: int, device=None, scale: float = 1.0) -> torch.Tensor:
    """The original transformer's fixed encoding: (length, dim), sin on even, cos on odd dims;
    row i encodes position i * scale."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None] * scale  # (T, 1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class CLSEncoder(nn.Module):
    """Tokens (B, T, D) -> clip embedding (B, D): prepend a learned CLS token, add positions,
    run the blocks, read the CLS token (``readout="cls"``) or the mean of every output token,
    CLS included (``"mean"``: the same for any number of tokens)."""

    def __init__(
        self, *, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float = 0.0,
        attn_dropout: float = 0.0, drop_path: float = 0.0, norm_first: bool = True,
        positions: str = "sinusoidal", max_tokens: int = 1024, fused: bool = False,
        activation: type[nn.Module] = nn.GELU, readout: str = "cls",
    ):
        super().__init__()
        if readout not in ("cls", "mean"):
            raise ValueError(f"readout must be cls or mean, got {readout!r}")
        self.dim = dim
        self.readout = readout
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.positions = positions
        # a probe, not a setting: token i is encoded at position i * position_scale (sinusoidal
        # positions only; 0 = no order at all). benchmarks/tta.py --position-scales sets it on
        # trained models to measure how much they use token order.
        self.position_scale = 1.0
        if positions == "learned":
            self.pos_table = nn.Parameter(torch.zeros(1, max_tokens + 1, dim))
            nn.init.trunc_normal_(self.pos_table, std=0.02)
        self.drop = nn.Dropout(dropout)
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # deeper -> dropped more
        self.blocks = nn.ModuleList(
            Block(dim=dim, heads=heads, mlp_dim=mlp_dim, dropout=dropout, attn_dropout=attn_dropout,
                  drop_path=r, norm_first=norm_first, fused=fused, activation=activation)
            for r in rates
        )
        self.norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def forward(self, tokens: torch.Tensor, need_weights: bool = False):
        B, T, D = tokens.shape
        x = torch.cat([self.cls_token.expand(B, -1, -1), tokens], dim=1)  # (B, 1 + T, D)
        if self.positions == "learned":
            if T + 1 > self.pos_table.shape[1]:
                raise ValueError(f"{T} tokens exceed model.max_tokens={self.pos_table.shape[1] - 1}")
            x = x + self.pos_table[:, : T + 1]
        else:
            x = x + sinusoidal_positions(T + 1, D, x.device, self.position_scale).to(x.dtype)
        x = self.drop(x)
        maps = []
        for block in self.blocks:
            x, w = block(x, need_weights=need_weights)  # (B, 1 + T, D)
            maps.append(w)
        x = self.norm(x)
        embedding = x[:, 0] if self.readout == "cls" else x.mean(dim=1)  # (B, D)
        return embedding, maps  # (B, D), per-block (B, H, 1 + T, 1 + T) or None
