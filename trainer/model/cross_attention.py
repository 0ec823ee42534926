"""Gated cross-attention dense blocks: text tokens read the visual tokens of their latest image.

Flamingo (arXiv 2204.14198, section 2.2): a cross-attention layer and a feed-forward, each added to
the residual stream through ``tanh(gate)`` with the gate initialised at 0, so that at
initialisation the language model computes exactly what it computed before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.model.perceiver import FeedForward, merge_heads, split_heads


def media_text_time(
    lang_x: torch.Tensor, media_token_id: int, offset: torch.Tensor | None = None
) -> torch.Tensor:
    """For each text token, the 1-based index of the latest ``<image>`` at or before it (0 = none).

    lang_x: [B, L]; offset: [B] count of ``<image>`` tokens that came before ``lang_x`` (a KV-cached
    prefix). Returns LongTensor [B, L].
    """
    time = (lang_x == media_token_id).long().cumsum(dim=-1)
    if offset is not None:
        time = time + offset.to(time.device).view(-1, 1)
    return time


class MaskedCrossAttention(nn.Module):
    """Text queries, visual keys/values; a token sees only the latents of image ``text_time``."""

    def __init__(self, dim: int, dim_visual: int, heads: int = 8, dim_head: int = 64):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, media: torch.Tensor, text_time: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D_txt]; media: [B, T, n, D_vis]; text_time: [B, L] -> [B, L, D_txt]."""
        b, t, n, _ = media.shape
        q = split_heads(self.to_q(self.norm(x)), self.heads)
        k, v = self.to_kv(media.reshape(b, t * n, -1)).chunk(2, dim=-1)
        media_time = torch.arange(1, t + 1, device=x.device).repeat_interleave(n)  # [T*n]
        has_media = text_time > 0  # [B, L]
        # Tokens with no image yet attend to everything (a well-defined softmax) and are zeroed below.
        allowed = (text_time[:, :, None] == media_time[None, None, :]) | ~has_media[:, :, None]
        out = F.scaled_dot_product_attention(
            q, split_heads(k, self.heads), split_heads(v, self.heads), attn_mask=allowed[:, None]
        )
        out = merge_heads(out) * has_media[:, :, None].to(out.dtype)
        return self.to_out(out)


class GatedCrossAttentionBlock(nn.Module):
    """x + tanh(attn_gate) * xattn(x, media); then x + tanh(ff_gate) * ff(x)."""

    def __init__(self, dim: int, dim_visual: int, heads: int = 8, dim_head: int = 64, ff_mult: int = 4):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, heads, dim_head)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = FeedForward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, media: torch.Tensor | None, text_time: torch.Tensor) -> torch.Tensor:
        # Without media (text-only batch) the attention term is exactly zero, as for any token
        # before its first image; the feed-forward still applies so logits do not depend on batching.
        if media is not None:
            x = x + self.attn(x, media, text_time) * self.attn_gate.tanh()
        return x + self.ff(x) * self.ff_gate.tanh()
