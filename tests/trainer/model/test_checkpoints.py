"""Checkpoint import: OpenFlamingo v2 and Otter layouts give the original implementation's logits."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from schemas.errors import SyphusError
from tests.trainer.train.helpers import run_cli
from trainer.checkpoints import (
    convert_checkpoint,
    detect_layout,
    load_flamingo_checkpoint,
    map_checkpoint_keys,
    read_state_dict,
)
from trainer.model.modeling_otter import OtterConfig, build_otter, load_otter

open_flamingo = pytest.importorskip(
    "open_flamingo", reason="open-flamingo==2.0.1 (the reference implementation) is not installed"
)
open_clip = pytest.importorskip("open_clip")

LM_SIZES = {"hidden_size": 64, "num_layers": 4, "num_heads": 4, "intermediate_size": 128}
TEXT = [
    "User: hi <image>User: colour? GPT: red<|endofchunk|><image>User: shape? GPT: a circle",
    "<image>User: how many? GPT: two<|endofchunk|>",
]


def reference_flamingo(vision_encoder, vis_dim, tokenizer, every, max_num_frames=None, seed=0, lm=None):
    """OpenFlamingo's own Flamingo class around a tiny LLaMA (``lm``, or a random one), with random
    non-zero gates."""
    from open_flamingo import Flamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.helpers import PerceiverResampler
    from open_flamingo.src.utils import extend_instance
    from transformers import AutoModelForCausalLM

    from trainer.model.language import tiny_lm_config

    torch.manual_seed(seed)
    if lm is None:
        lm = AutoModelForCausalLM.from_config(tiny_lm_config("tiny-llama", 488, LM_SIZES))
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("model.layers")
    lm.resize_token_embeddings(len(tokenizer))
    ref = Flamingo(
        vision_encoder,
        lm,
        tokenizer.convert_tokens_to_ids("<|endofchunk|>"),
        tokenizer.convert_tokens_to_ids("<image>"),
        vis_dim=vis_dim,
        cross_attn_every_n_layers=every,
    )
    if max_num_frames:
        ref.perceiver = PerceiverResampler(dim=vis_dim, max_num_frames=max_num_frames)
    with torch.no_grad():
        for layer in ref.lang_encoder.gated_cross_attn_layers:
            if layer is not None:
                layer.attn_gate.uniform_(0.3, 1.0)
                layer.ff_gate.uniform_(0.3, 1.0)
    return ref.eval()


def of_tokenizer():
    from trainer.model.language import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.add_special_tokens(
        {"additional_special_tokens": ["<|endofchunk|>", "<image>"]}
    )  # as OpenFlamingo does
    return tok


def batch(tokenizer, images=2, seed=1):
    tokenizer.padding_side = "right"
    enc = tokenizer(TEXT, return_tensors="pt", padding=True)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, images, 1, 3, 32, 32, generator=g), enc.input_ids, enc.attention_mask


def max_diff(ref, ours, vision_x, ids, mask, columns=None):
    """Largest logit difference over real tokens (and the first ``columns`` vocabulary entries)."""
    with torch.no_grad():
        a = ref(vision_x, ids, attention_mask=mask).logits
        b = ours(vision_x=vision_x, lang_x=ids, attention_mask=mask).logits
    real = mask.bool()
    columns = columns or a.shape[-1]
    return (a[real][:, :columns] - b[real][:, :columns]).abs().max().item()


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oc")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    (folder / "syphus-test-vit.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return "syphus-test-vit"


def test_openflamingo_checkpoint_parity(tiny_open_clip, tmp_path):
    tok = of_tokenizer()
    torch.manual_seed(0)
    clip = open_clip.create_model(tiny_open_clip)
    clip.visual.output_tokens = True
    ref = reference_flamingo(clip, 48, tok, every=2)
    torch.save(ref.state_dict(), tmp_path / "checkpoint.pt")

    cfg = OtterConfig(
        vision_encoder=f"open_clip:{tiny_open_clip}:none",
        lm="tiny-llama",
        tiny_lm=LM_SIZES,
        cross_attn_every_n_layers=2,
        init_seed=123,
    )
    ours, our_tok, _ = build_otter(cfg)
    ours.eval()
    vision_x, ids, mask = batch(tok)
    assert our_tok(TEXT[0]).input_ids == tok(TEXT[0]).input_ids  # same ids for the shared vocabulary
    assert max_diff(ref, ours, vision_x, ids, mask) > 1e-2  # different random weights before loading

    report = load_flamingo_checkpoint(ours, tmp_path / "checkpoint.pt", require_all=True)
    assert report.layout == "openflamingo" and not report.unexpected and not report.missing
    assert max_diff(ref, ours, vision_x, ids, mask) <= 1e-4

    # The checkpoint.pt OpenFlamingo writes while training keeps only the trainable parts and
    # the embeddings; loaded over the same base weights it reproduces the logits too.
    trainable = {
        k: v
        for k, v in ref.state_dict().items()
        if k.startswith("perceiver.") or ".gated_cross_attn_layer." in k or "embed_tokens" in k
    }
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in trainable.items()}}, tmp_path / "train.pt")
    with torch.no_grad():
        for p in ours.perceiver.parameters():
            p.add_(0.1)
    assert max_diff(ref, ours, vision_x, ids, mask) > 1e-3
    report = load_flamingo_checkpoint(ours, tmp_path / "train.pt")
    assert report.missing and all(n.startswith(("lang_model.", "vision_encoder.")) for n in report.missing)
    assert max_diff(ref, ours, vision_x, ids, mask) <= 1e-4

    # One call converts to a self-contained Otter folder that loads back with the same logits.
    convert_checkpoint(tmp_path / "checkpoint.pt", cfg, tmp_path / "converted")
    converted, _, _ = load_otter(tmp_path / "converted")
    assert max_diff(ref, converted.eval(), vision_x, ids, mask) <= 1e-4


def test_otter_hf_checkpoint_parity(tmp_path, capsys):
    """An Otter-layout folder (HF CLIP vision tower, feed_forward naming, frame embeddings, sharded
    safetensors) against the same computation run by OpenFlamingo's classes."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    clip_dir = tmp_path / "clip"
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    )
    clip.save_pretrained(clip_dir)

    class OtterStyleVision(torch.nn.Module):
        """Otter's vision call: CLIPVisionModel(x)[0][:, 1:, :], exposed the way Flamingo expects."""

        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, x):
            return None, self.clip(pixel_values=x).last_hidden_state[:, 1:, :]

    holder = torch.nn.Module()
    holder.visual = OtterStyleVision(clip)
    tok = of_tokenizer()
    ref = reference_flamingo(holder, 48, tok, every=1, max_num_frames=4)
    otter_state = {}
    for k, v in ref.state_dict().items():
        if k.startswith(("lang_encoder.gated_cross_attn_layers.", "lang_encoder.old_decoder_blocks.")):
            continue  # Otter's module tree does not repeat them
        k = k.replace("vision_encoder.clip.", "vision_encoder.")
        k = k.replace(".gated_cross_attn_layer.ff.", ".gated_cross_attn_layer.feed_forward.")
        if k.startswith("perceiver.layers."):
            parts = k.split(".")
            parts[3:4] = [] if parts[3] == "0" else ["feed_forward"]
            k = ".".join(parts)
        otter_state[k] = v.contiguous()
    # Otter appends <|endofchunk|>, <image>, <answer>: add the <answer> row as the original does.
    for key in ("lang_encoder.model.embed_tokens.weight", "lang_encoder.lm_head.weight"):
        otter_state[key] = torch.cat([otter_state[key], torch.randn(1, 64)])
    keys = sorted(otter_state)
    half = len(keys) // 2
    folder = tmp_path / "OTTER-tiny"
    folder.mkdir()
    save_file({k: otter_state[k] for k in keys[:half]}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({k: otter_state[k] for k in keys[half:]}, str(folder / "model-00002-of-00002.safetensors"))
    assert detect_layout(read_state_dict(folder)) == "otter"

    cfg = OtterConfig(
        vision_encoder=f"hf-clip:{clip_dir}", lm="tiny-llama", tiny_lm=LM_SIZES, max_num_frames=4, init_seed=5
    )
    ours, _, _ = build_otter(cfg)
    ours.eval()
    report = load_flamingo_checkpoint(ours, folder, require_all=True)
    assert report.layout == "otter" and not report.unexpected
    vision_x, ids, mask = batch(tok)
    assert max_diff(ref, ours, vision_x, ids, mask) <= 1e-4
    assert torch.equal(
        ours.get_input_embeddings().weight[ours.config.answer_token_id],
        otter_state["lang_encoder.model.embed_tokens.weight"][-1],
    )

    # The same folder through the CLI: frame embeddings and cross-attention placement come from
    # the weights, the tiny LM's sizes from a model JSON (a real run names the LM's folder).
    (tmp_path / "tiny.json").write_text(json.dumps({"lm": "tiny-llama", "tiny_lm": LM_SIZES}))
    argv = ["convert", str(folder), "--lm", "tiny-llama", "--vision-encoder", f"hf-clip:{clip_dir}"]
    code, out, err = run_cli(
        [*argv, "--model", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "c")], capsys
    )
    assert code == 0 and "otter layout" in out, err
    converted, _, _ = load_otter(tmp_path / "c")
    assert converted.config.max_num_frames == 4
    assert max_diff(ref, converted.eval(), vision_x, ids, mask) <= 1e-4


def test_key_mapping_names():
    class Fake:
        xattn_layer_indices = [1, 3]
        decoder_layers_path = "transformer.blocks"

    t = torch.zeros(1)
    mapped = map_checkpoint_keys(
        {
            "perceiver.layers.0.0.to_q.weight": t,
            "perceiver.layers.0.1.3.weight": t,
            "lang_encoder.transformer.blocks.3.gated_cross_attn_layer.ff.1.weight": t,
            "lang_encoder.gated_cross_attn_layers.1.attn_gate": t,
            "lang_encoder.transformer.blocks.2.decoder_layer.attn.Wqkv.weight": t,
            "lang_encoder.old_decoder_blocks.2.attn.Wqkv.weight": t,
            "lang_encoder.transformer.wte.weight": t,
        },
        Fake(),
    )
    assert sorted(mapped) == [
        "gated_cross_attn_layers.0.attn_gate",
        "gated_cross_attn_layers.1.ff.fc_in.weight",
        "lang_model.transformer.blocks.2.attn.Wqkv.weight",
        "lang_model.transformer.wte.weight",
        "perceiver.layers.0.attn.to_q.weight",
        "perceiver.layers.0.ff.fc_out.weight",
    ]
    with pytest.raises(SyphusError, match="cross-attention before layer 2"):
        map_checkpoint_keys({"lang_encoder.gated_cross_attn_layers.2.attn_gate": t}, Fake())


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_load_without_unpickling_objects(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"perceiver.latents": Payload()}, f)
    with pytest.raises(SyphusError, match="weights-only"):
        read_state_dict(path)
    with pytest.raises(SyphusError, match="not found"):
        read_state_dict(tmp_path / "missing.pt")


def test_syphus_convert_and_init_from_take_openflamingos_training_checkpoint(
    tiny_open_clip, tmp_path, capsys
):
    """The checkpoint.pt OpenFlamingo saves (trained parts only) + the LM folder and the open_clip
    weights file it was trained on -> a model folder with the original's logits; init_from in a
    training config takes the same checkpoint."""
    from transformers import AutoModelForCausalLM

    from schemas.train import TrainConfig
    from trainer.model.language import build_tiny_tokenizer, tiny_lm_config
    from trainer.train import build_model

    torch.manual_seed(3)
    lm_dir = tmp_path / "tiny-llama"
    AutoModelForCausalLM.from_config(tiny_lm_config("tiny-llama", 488, LM_SIZES)).save_pretrained(lm_dir)
    build_tiny_tokenizer().save_pretrained(lm_dir)
    clip = open_clip.create_model(tiny_open_clip)
    clip.visual.output_tokens = True
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(tmp_path / "clip.safetensors"))
    tok = of_tokenizer()
    ref = reference_flamingo(clip, 48, tok, every=2, lm=AutoModelForCausalLM.from_pretrained(lm_dir))
    trainable = {
        f"module.{k}": v
        for k, v in ref.state_dict().items()
        if k.startswith("perceiver.") or ".gated_cross_attn_layer." in k or "embed_tokens" in k
    }
    torch.save({"model_state_dict": trainable, "epoch": 2}, tmp_path / "checkpoint.pt")
    vision = f"open_clip:{tiny_open_clip}:{tmp_path / 'clip.safetensors'}"

    argv = ["convert", str(tmp_path / "checkpoint.pt"), "--lm", str(lm_dir), "--vision-encoder", vision]
    code, out, err = run_cli([*argv, "--out", str(tmp_path / "converted")], capsys)
    assert code == 0, err
    assert "openflamingo layout" in out and "taken from --lm/--vision-encoder" in out
    converted, _, _ = load_otter(tmp_path / "converted")
    assert converted.config.cross_attn_every_n_layers == 2  # read from the weights
    vision_x, ids, mask = batch(tok)
    # This LM's output embeddings are untied and OpenFlamingo does not train them, so the
    # checkpoint has no output rows for its added tokens: compare the base vocabulary.
    base = converted.config.base_vocab_size
    assert max_diff(ref, converted.eval(), vision_x, ids, mask, base) <= 1e-4

    cfg = TrainConfig(
        max_steps=1,
        init_from=str(tmp_path / "checkpoint.pt"),
        model={"lm": str(lm_dir), "vision_encoder": vision},
    )
    model, _, _ = build_model(cfg)
    assert max_diff(ref, model.eval(), vision_x, ids, mask, base) <= 1e-4
    model, _, _ = build_model(TrainConfig(max_steps=1, init_from=str(tmp_path / "converted")))
    assert max_diff(ref, model.eval(), vision_x, ids, mask, base) <= 1e-4

    # An existing --out is left alone; a pickle that needs more than tensors is refused unread;
    # the wrong LM is named as the likely cause.
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    code, _, err = run_cli([*argv, "--out", str(tmp_path / "taken")], capsys)
    assert code == 1 and "already exists" in err and (tmp_path / "taken" / "mine.txt").read_text() == "keep"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"perceiver.latents": Payload()}, f)
    code, out, err = run_cli(
        [
            "convert",
            str(tmp_path / "evil.pt"),
            "--lm",
            str(lm_dir),
            "--vision-encoder",
            vision,
            "--out",
            str(tmp_path / "e"),
        ],
        capsys,
    )
    assert code == 1 and "weights-only" in err and len(err.strip().splitlines()) == 1
    assert "must never run" not in out + err and not (tmp_path / "e").exists()
    code, _, err = run_cli([*argv[:3], "tiny-gpt2", *argv[4:], "--out", str(tmp_path / "g")], capsys)
    assert (
        code == 1 and "checkpoint.pt" in err and "trained with" in err and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob(".g.*"))
