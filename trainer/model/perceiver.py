"""The perceiver resampler: a fixed number of learned latents read each image's patch tokens.

Flamingo (arXiv 2204.14198, section 2.1): per image, ``num_latents`` learned queries cross-attend
to the concatenation of the patch features and themselves, ``depth`` times, each step followed by
a feed-forward; video frames get a learned frame embedding before being flattened together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class FeedForward(nn.Module):
    """Pre-norm MLP without biases: LayerNorm -> Linear(dim, mult*dim) -> GELU -> Linear(mult*dim, dim)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc_in = nn.Linear(dim, dim * mult, bias=False)
        self.fc_out = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.gelu(self.fc_in(self.norm(x))))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[..., n, heads*d] -> [..., heads, n, d]."""
    *lead, n, hd = x.shape
    return x.view(*lead, n, heads, hd // heads).transpose(-3, -2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[..., heads, n, d] -> [..., n, heads*d]."""
    x = x.transpose(-3, -2)
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


class PerceiverAttention(nn.Module):
    """Latents attend to [media tokens ; latents] (keys and values from both)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """media: [B, T, v, D], latents: [B, T, n, D] -> [B, T, n, D] (the residual update)."""
        media = self.norm_media(media)
        latents = self.norm_latents(latents)
        q = split_heads(self.to_q(latents), self.heads)
        k, v = self.to_kv(torch.cat([media, latents], dim=-2)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, split_heads(k, self.heads), split_heads(v, self.heads))
        return self.to_out(merge_heads(out))


class PerceiverLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.attn = PerceiverAttention(dim, heads, dim_head)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = latents + self.attn(media, latents)
        return latents + self.ff(latents)


class PerceiverResampler(nn.Module):
    """[B, T, F, v, D] patch features -> [B, T, num_latents, D] visual tokens per image."""

    def __init__(
        self,
        dim: int,
        depth: int = 6,
        heads: int = 8,
        dim_head: int = 64,
        num_latents: int = 64,
        max_num_frames: int | None = None,
        max_num_media: int | None = None,
        ff_mult: int = 4,
    ):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        # Frame embeddings tell video frames apart; media-time embeddings (unused by OpenFlamingo v2
        # and Otter, kept for checkpoints that carry them) tell images apart.
        self.frame_embs = nn.Parameter(torch.randn(max_num_frames, dim)) if max_num_frames else None
        self.media_time_embs = nn.Parameter(torch.randn(max_num_media, 1, dim)) if max_num_media else None
        self.layers = nn.ModuleList(PerceiverLayer(dim, heads, dim_head, ff_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, f, v, d = x.shape
        if self.frame_embs is not None:
            if f > self.frame_embs.shape[0]:
                raise ValueError(
                    f"vision_x has {f} frames but the model was built with max_num_frames={self.frame_embs.shape[0]}"
                )
            x = x + self.frame_embs[:f].view(1, 1, f, 1, d)
        x = x.reshape(b, t, f * v, d)
        if self.media_time_embs is not None:
            x = x + self.media_time_embs[:t]
        latents = self.latents.expand(b, t, *self.latents.shape)
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                latents = checkpoint(layer, x, latents, use_reentrant=False)
            else:
                latents = layer(x, latents)
        return self.norm(latents)
