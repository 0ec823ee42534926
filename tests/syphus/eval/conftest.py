"""A saved tiny Otter whose gates are open (so its answers depend on the images) and the drawn
shapes benchmark, shared by the eval tests."""

from __future__ import annotations

import pytest
import torch

from .shapes_bench import write_shapes


def save_tiny_otter(folder, seed: int = 0):
    from trainer.model.modeling_otter import build_otter, save_otter

    torch.manual_seed(seed)
    model, tok, proc = build_otter("tiny")
    with torch.no_grad():  # a fresh Otter ignores images (tanh(0) gates); open them
        for block in model.gated_cross_attn_layers:
            block.attn_gate.fill_(0.8)
            block.ff_gate.fill_(0.8)
    save_otter(folder, model, tok, proc)
    return folder


@pytest.fixture(scope="session")
def otter_dir(tmp_path_factory):
    return save_tiny_otter(tmp_path_factory.mktemp("otter") / "model")


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchdata")
    write_shapes(root / "shapes")
    write_shapes(root / "shapes_judged", n=6)
    return root
