"""Import OpenFlamingo v2 and Otter (``luodian/OTTER-*``) weights into ``OtterForConditionalGeneration``.

Both originals wrap each decoder layer of the LM in a module holding ``gated_cross_attn_layer``
and ``decoder_layer``; OpenFlamingo's full ``state_dict`` also repeats them under
``lang_encoder.gated_cross_attn_layers.{i}`` and ``lang_encoder.old_decoder_blocks.{i}``, while the
``checkpoint.pt`` it saves during training keeps only the trainable parts. Our model keeps the LM
unwrapped (``lang_model.*``) and the blocks in ``gated_cross_attn_layers.{k}``, so keys are renamed:

| original | ours |
|---|---|
| ``perceiver.layers.{i}.0.X`` (OpenFlamingo) / ``perceiver.layers.{i}.X`` (Otter) | ``perceiver.layers.{i}.attn.X`` |
| ``perceiver.layers.{i}.1.{0,1,3}`` / ``perceiver.layers.{i}.feed_forward.{0,1,3}`` | ``perceiver.layers.{i}.ff.{norm,fc_in,fc_out}`` |
| ``lang_encoder.PATH.{i}.gated_cross_attn_layer.ff.{0,1,3}`` / ``.feed_forward.{0,1,3}`` | ``gated_cross_attn_layers.{k}.ff.{norm,fc_in,fc_out}`` |
| ``lang_encoder.PATH.{i}.decoder_layer.Y`` | ``lang_model.PATH.{i}.Y`` |
| ``lang_encoder.Z`` | ``lang_model.Z`` |
| ``vision_encoder.Z`` | ``vision_encoder.model.Z`` |

Embedding rows of the added special tokens are matched by token string, since the originals add
them in a different order. Files are read without unpickling arbitrary objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from schemas.errors import SyphusError

FF_NAMES = {"0": "norm", "1": "fc_in", "3": "fc_out"}
# Special tokens each original appends after the base vocabulary, in its order.
ADDED_TOKENS = {
    "openflamingo": ["<|endofchunk|>", "<image>", "<PAD>"],
    "otter": ["<|endofchunk|>", "<image>", "<answer>", "<PAD>"],
}
_WRAPPED = re.compile(r"^lang_encoder\.(.+)\.(\d+)\.(gated_cross_attn_layer|decoder_layer)\.(.+)$")
_XATTN_LIST = re.compile(r"^lang_encoder\.gated_cross_attn_layers\.(\d+)\.(.+)$")
_OLD_BLOCKS = re.compile(r"^lang_encoder\.old_decoder_blocks\.(\d+)\.(.+)$")


@dataclass
class LoadReport:
    """What a checkpoint import did: counts and the names that did not line up."""

    layout: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors``/``.pt``/``.bin`` file or a folder of (sharded) weight files.

    Pickled files are read with ``torch.load(weights_only=True)``; a training checkpoint dict with a
    ``model_state_dict``/``state_dict`` entry is unwrapped, and a DDP ``module.`` prefix dropped.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise SyphusError(f"{path}: no *.safetensors or pytorch_model*.bin weight files in this folder")
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(read_state_dict(f))
        return state
    if not path.is_file():
        raise SyphusError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise SyphusError(
            f"{path}: cannot read as a weights-only checkpoint ({type(e).__name__}); "
            "it may contain pickled objects other than tensors"
        ) from e
    for key in ("model_state_dict", "state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SyphusError(f"{path}: expected a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """``openflamingo`` (perceiver blocks as ``.0``/``.1`` pairs) or ``otter`` (``feed_forward``)."""
    if any(k.startswith("perceiver.layers.") and ".feed_forward." in k for k in state):
        return "otter"
    if any(k.startswith("perceiver.layers.") for k in state):
        return "openflamingo"
    if any(".gated_cross_attn_layer.feed_forward." in k for k in state):
        return "otter"
    if any("gated_cross_attn_layer" in k for k in state):
        return "openflamingo"
    raise SyphusError(
        "checkpoint has neither perceiver.* nor gated cross-attention keys: not OpenFlamingo/Otter"
    )


def _rename_ff(rest: str, ff_prefix: str) -> str:
    """``ff.1.weight`` / ``feed_forward.1.weight`` -> ``ff.fc_in.weight``."""
    head, _, tail = rest.partition(".")
    if head == ff_prefix:
        idx, _, leaf = tail.partition(".")
        if idx in FF_NAMES:
            return f"ff.{FF_NAMES[idx]}.{leaf}"
    return rest


def _rename_perceiver(key: str, layout: str) -> str:
    m = re.match(r"^perceiver\.layers\.(\d+)\.(.+)$", key)
    if not m:
        return key  # latents, frame_embs, media_time_embs, norm
    i, rest = m.groups()
    if layout == "openflamingo":
        sub, _, leaf = rest.partition(".")
        if sub == "0":
            return f"perceiver.layers.{i}.attn.{leaf}"
        if sub == "1":
            return f"perceiver.layers.{i}.{_rename_ff('ff.' + leaf, 'ff')}"
        return key
    if rest.startswith("feed_forward."):
        return f"perceiver.layers.{i}.{_rename_ff(rest, 'feed_forward')}"
    return f"perceiver.layers.{i}.attn.{rest}"


def _rename_xattn(rest: str, layout: str) -> str:
    return _rename_ff(rest, "feed_forward" if layout == "otter" else "ff")


def map_checkpoint_keys(
    state: dict[str, torch.Tensor], model, layout: str | None = None
) -> dict[str, torch.Tensor]:
    """Rename an original state dict to this model's parameter names (duplicates collapse)."""
    layout = layout or detect_layout(state)
    block_of_layer = {layer: k for k, layer in enumerate(model.xattn_layer_indices)}
    lm_layers = model.decoder_layers_path
    out: dict[str, torch.Tensor] = {}

    def xattn_key(layer: int, rest: str, key: str) -> str:
        if layer not in block_of_layer:
            raise SyphusError(
                f"checkpoint key '{key}': cross-attention before layer {layer}, but this model has blocks only "
                f"before layers {model.xattn_layer_indices} (check cross_attn_every_n_layers)"
            )
        return f"gated_cross_attn_layers.{block_of_layer[layer]}.{_rename_xattn(rest, layout)}"

    for key, value in state.items():
        if key.startswith("perceiver."):
            new = _rename_perceiver(key, layout)
        elif key.startswith("vision_encoder."):
            new = "vision_encoder.model." + key[len("vision_encoder.") :]
        elif m := _XATTN_LIST.match(key):
            new = xattn_key(int(m.group(1)), m.group(2), key)
        elif m := _OLD_BLOCKS.match(key):
            new = f"lang_model.{lm_layers}.{m.group(1)}.{m.group(2)}"
        elif m := _WRAPPED.match(key):
            _, layer, kind, rest = m.groups()
            if kind == "gated_cross_attn_layer":
                new = xattn_key(int(layer), rest, key)
            else:
                new = f"lang_model.{lm_layers}.{layer}.{rest}"
        elif key.startswith("lang_encoder."):
            new = "lang_model." + key[len("lang_encoder.") :]
        else:
            new = key
        out[new] = value
    return out


def _embedding_names(model) -> set[str]:
    ids = {id(model.get_input_embeddings().weight)}
    out_emb = model.get_output_embeddings()
    if out_emb is not None:
        ids.add(id(out_emb.weight))
    return {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in ids}


def _remap_rows(
    src: torch.Tensor, dst: torch.Tensor, base: int, added: list[str], token_ids: dict[str, int]
) -> torch.Tensor:
    """Copy base rows one to one and each original special-token row to our row for that token."""
    out = dst.detach().clone()
    out[:base] = src[:base]
    for j, token in enumerate(added[: src.shape[0] - base]):
        ours = token_ids.get(token)
        if ours is not None and ours >= base:
            out[ours] = src[base + j]
    return out


def load_flamingo_checkpoint(
    model,
    path: str | Path,
    *,
    layout: str | None = None,
    tokenizer=None,
    require_all: bool = False,
) -> LoadReport:
    """Load OpenFlamingo v2 ``checkpoint.pt`` or an Otter HF folder/file into ``model`` in place.

    Parts the checkpoint does not hold (an OpenFlamingo training checkpoint omits the frozen LM
    and vision encoder) keep the weights ``model`` already has; the perceiver and every
    cross-attention block must be present. ``require_all`` demands every parameter.
    """
    state = read_state_dict(path)
    layout = layout or detect_layout(state)
    mapped = map_checkpoint_keys(state, model, layout)
    own = dict(model.state_dict())
    emb_names = _embedding_names(model)
    cfg = model.config
    base = cfg.base_vocab_size
    token_ids = {
        "<|endofchunk|>": cfg.endofchunk_token_id,
        "<image>": cfg.media_token_id,
        "<answer>": cfg.answer_token_id,
        "<PAD>": cfg.pad_token_id,
    }
    if tokenizer is not None:
        token_ids.update(
            {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endofchunk|>", "<image>", "<answer>")}
        )
    report = LoadReport(layout=layout)
    new_state = {}
    for name, value in mapped.items():
        if name not in own:
            report.unexpected.append(name)
            continue
        target = own[name]
        if name in emb_names and value.shape != target.shape and base is not None:
            if value.shape[1:] != target.shape[1:] or value.shape[0] < base:
                raise SyphusError(
                    f"{path}: '{name}' has shape {tuple(value.shape)}, model expects {tuple(target.shape)}"
                )
            value = _remap_rows(value, target, base, ADDED_TOKENS[layout], token_ids)
        elif name in emb_names and base is not None:
            value = _remap_rows(value, target, base, ADDED_TOKENS[layout], token_ids)
        if value.shape != target.shape:
            raise SyphusError(
                f"{path}: '{name}' has shape {tuple(value.shape)}, model expects {tuple(target.shape)}"
            )
        new_state[name] = value.to(target.dtype)
    report.missing = sorted(set(own) - set(new_state) - _tied_duplicates(model, new_state))
    needed = [n for n in report.missing if n.startswith(("perceiver.", "gated_cross_attn_layers."))]
    if needed or (require_all and report.missing):
        first = (needed or report.missing)[0]
        raise SyphusError(
            f"{path}: {len(needed or report.missing)} model weights missing from the {layout} checkpoint, e.g. '{first}'"
        )
    model.load_state_dict(new_state, strict=False)
    report.loaded = len(new_state)
    return report


def _tied_duplicates(model, loaded: dict) -> set[str]:
    """Names that alias a loaded parameter (tied embeddings) count as loaded."""
    by_id: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(n)
    out = set()
    for names in by_id.values():
        if any(n in loaded for n in names):
            out.update(names)
    return out


def convert_checkpoint(
    source: str | Path, config, out: str | Path, *, layout: str | None = None
) -> LoadReport:
    """Build an Otter from ``config`` (its pretrained LM and vision encoder), load an OpenFlamingo v2
    or Otter checkpoint over it, and save the result as one ``save_otter`` folder at ``out``."""
    from trainer.modeling_otter import build_otter, save_otter

    model, tokenizer, processor = build_otter(config)
    report = load_flamingo_checkpoint(model, source, layout=layout, tokenizer=tokenizer)
    save_otter(out, model, tokenizer, processor)
    return report
