"""The training loss, one definition for the model's ``forward(labels=...)`` and the training loop
(which also needs per-sample sums and counts to average exactly across micro-batches and ranks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.prompting import IGNORE_INDEX


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy over supervised positions (labels != -100), shifted inside.

    Returns (mean loss over the batch's supervised tokens, per-sample loss sums [B], per-sample
    supervised counts [B]). A batch with no supervised token gives a loss of exactly 0 that
    still back-propagates (zero gradients), never NaN.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:].to(logits.device)
    ce = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    counts = (shift_labels != IGNORE_INDEX).sum(dim=1)
    sums = ce.sum(dim=1)
    return sums.sum() / counts.sum().clamp(min=1), sums.detach(), counts
