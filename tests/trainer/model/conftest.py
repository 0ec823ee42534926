import pytest
import torch


@pytest.fixture(scope="module")
def tiny():
    """A tiny Otter (random tiny vision encoder + tiny LLaMA), built once per test module."""
    from trainer.model.modeling_otter import build_otter

    model, tokenizer, processor = build_otter("tiny")
    model.eval()
    return model, tokenizer, processor


def open_gates(model, seed: int = 0) -> None:
    """Give every tanh gate a non-zero value so cross-attention changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.gated_cross_attn_layers:
            block.attn_gate.copy_(torch.rand(1, generator=g) + 0.5)
            block.ff_gate.copy_(torch.rand(1, generator=g) + 0.5)
