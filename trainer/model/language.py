"""Language models by spec: a Hugging Face name/path, ``smollm2`` or any other name of the bundled
SmolLM2 (see ``curation.pretrained``), or ``tiny-llama`` / ``tiny-gpt2`` (random weights, a small
offline byte-level tokenizer)."""

from __future__ import annotations

import torch
from torch import nn

from curation.pretrained import SMOLLM2, is_model, smollm2_folder
from schemas.errors import SyphusError

SPECIAL_TOKENS = ("<image>", "<|endofchunk|>", "<answer>")
TINY_LMS = ("tiny-llama", "tiny-gpt2")
# Where known families keep their decoder block list; anything else is found by shape.
KNOWN_DECODER_LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "transformer.h",
    "transformer.blocks",
    "gpt_neox.layers",
    "model.decoder.layers",
)

# Words the tiny tokenizer learns merges for, so prompts of the synthetic tests stay short.
_TINY_CORPUS = """
User: GPT: What colour is the shape? How many circles are there? Where is the square? What is in the image?
Answer the question. The answer is yes no one two three four five six seven eight nine ten zero
red green blue yellow orange purple pink black white gray brown colour color shape circle circles
square squares triangle triangles star left right top bottom middle centre center upper lower corner
a an the is are there of in on at to and or with image picture photo video frame describe what which
how many where who when why this that it its small large big tiny
"""


def build_tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer trained in-process on a fixed word list: any text encodes, no downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line.strip() for line in _TINY_CORPUS.strip().splitlines()] * 4
    tok.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<pad>"
    )


def tiny_lm_config(kind: str, vocab_size: int, sizes: dict):
    hidden = int(sizes.get("hidden_size", 64))
    layers = int(sizes.get("num_layers", 2))
    heads = int(sizes.get("num_heads", 4))
    inter = int(sizes.get("intermediate_size", 4 * hidden))
    max_pos = int(sizes.get("max_position_embeddings", 1024))
    if kind == "tiny-llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max_pos,
            tie_word_embeddings=False,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
        )
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        n_inner=inter,
        n_positions=max_pos,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )


def load_tokenizer_and_lm(spec: str, tiny_sizes: dict, *, pretrained: bool, lm_config: dict | None):
    """Return (tokenizer, causal LM). With ``pretrained=False`` the LM is built from ``text_config``
    with random weights (the caller loads saved weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if spec in TINY_LMS:
        tokenizer = build_tiny_tokenizer(int(tiny_sizes.get("tokenizer_vocab", 512)))
        config = tiny_lm_config(spec, len(tokenizer), tiny_sizes)
        return tokenizer, AutoModelForCausalLM.from_config(config)
    path = str(smollm2_folder(spec)) if is_model(spec, SMOLLM2) else spec
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if pretrained:
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        else:
            config = AutoConfig.for_model(**lm_config) if lm_config else AutoConfig.from_pretrained(path)
            lm = AutoModelForCausalLM.from_config(config)
    except OSError as e:
        raise SyphusError(
            f"lm '{spec}': cannot load ({e}); pass a local folder, smollm2, tiny-llama or tiny-gpt2"
        ) from e
    return tokenizer, lm


def add_special_tokens(tokenizer) -> dict[str, int]:
    """Add ``<|endofchunk|>``, ``<image>``, a pad token if missing, then ``<answer>``; return their ids.

    The order matches OpenFlamingo's tokenizer (eoc, image, pad), so the embedding rows of its
    checkpoints line up one to one; ``<answer>`` comes last.
    """
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<PAD>"})
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<answer>"]}, replace_extra_special_tokens=False
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {
        "media_token_id": ids["<image>"],
        "endofchunk_token_id": ids["<|endofchunk|>"],
        "answer_token_id": ids["<answer>"],
        "pad_token_id": tokenizer.pad_token_id,
    }


def find_decoder_layers(lm: nn.Module) -> tuple[str, nn.ModuleList]:
    """Locate the list of decoder blocks: a known attribute path, else the ModuleList whose length is
    the configured number of layers and whose items all share one class."""
    n_layers = None
    cfg = getattr(lm, "config", None)
    for attr in ("num_hidden_layers", "n_layer", "n_layers", "num_layers"):
        if cfg is not None and isinstance(getattr(cfg, attr, None), int):
            n_layers = getattr(cfg, attr)
            break
    for path in KNOWN_DECODER_LAYER_PATHS:
        obj = lm
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return path, obj
    candidates = []
    for name, mod in lm.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and len({type(m) for m in mod}) == 1:
            if n_layers is None or len(mod) == n_layers:
                candidates.append((name.count("."), name, mod))
    if not candidates:
        raise SyphusError(f"lm {type(lm).__name__}: cannot find its list of decoder layers")
    _, name, mod = min(candidates, key=lambda c: (c[0], -len(c[2])))
    return name, mod
