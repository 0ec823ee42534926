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

``import_checkpoint`` is what ``syphus convert`` and ``init_from`` run: it reads the checkpoint
once, takes the architecture the weights show (cross-attention placement, perceiver depth,
latents, frame and media embeddings, head width, feed-forward width), builds the model around
the LM and vision encoder they were trained on, and loads the weights over it.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from schemas.errors import SyphusError, quiet_weights_refusal

FF_NAMES = {"0": "norm", "1": "fc_in", "3": "fc_out"}
# Special tokens each original appends after the base vocabulary, in its order.
ADDED_TOKENS = {
    "openflamingo": ["<|endofchunk|>", "<image>", "<PAD>"],
    "otter": ["<|endofchunk|>", "<image>", "<answer>", "<PAD>"],
}
_WRAPPED = re.compile(r"^lang_encoder\.(.+)\.(\d+)\.(gated_cross_attn_layer|decoder_layer)\.(.+)$")
_XATTN_LIST = re.compile(r"^lang_encoder\.gated_cross_attn_layers\.(\d+)\.(.+)$")
_OLD_BLOCKS = re.compile(r"^lang_encoder\.old_decoder_blocks\.(\d+)\.(.+)$")
# Buffers older transformers versions saved with the weights and newer ones rebuild themselves.
_STALE_BUFFERS = (".position_ids", ".inv_freq", ".masked_bias", ".attn.bias")


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
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:  # cut short, or not a safetensors file at all
            raise SyphusError(f"{path}: cannot read as safetensors ({' '.join(str(e).split())[:200]})") from e
    try:
        with quiet_weights_refusal():
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
    path: str | Path | dict[str, torch.Tensor],
    *,
    layout: str | None = None,
    tokenizer=None,
    require_all: bool = False,
) -> LoadReport:
    """Load OpenFlamingo v2 ``checkpoint.pt`` or an Otter HF folder/file into ``model`` in place.

    Parts the checkpoint does not hold (an OpenFlamingo training checkpoint omits the frozen LM
    and vision encoder) keep the weights ``model`` already has; the perceiver and every
    cross-attention block must be present. ``require_all`` demands every parameter. ``path`` may
    also be a state dict already read with ``read_state_dict``.
    """
    state = path if isinstance(path, dict) else read_state_dict(path)
    if isinstance(path, dict):
        path = "checkpoint"
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


def _index_of(pattern: str, state: dict) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := rx.match(k))})


def _first(state: dict, *patterns: str) -> torch.Tensor | None:
    for pat in patterns:
        rx = re.compile(pat)
        for k, v in state.items():
            if rx.match(k):
                return v
    return None


def infer_architecture(
    state: dict[str, torch.Tensor], *, perceiver_heads: int = 8, xattn_heads: int = 8
) -> dict:
    """``OtterConfig`` fields that the weights determine. Head counts do not show in the shapes
    (only heads x head width does): both originals use 8, the default here."""
    layers = _index_of(r"^lang_encoder\..+\.(\d+)\.gated_cross_attn_layer\.", state) or _index_of(
        r"^lang_encoder\.gated_cross_attn_layers\.(\d+)\.", state
    )
    if not layers:
        raise SyphusError(
            "checkpoint has no gated cross-attention weights: not an OpenFlamingo/Otter checkpoint"
        )
    every = layers[0] + 1
    if layers != list(range(every - 1, layers[-1] + 1, every)):
        raise SyphusError(
            f"checkpoint has cross-attention before decoder layers {layers}: not every N-th layer"
        )
    out: dict = {"cross_attn_every_n_layers": every}
    depth = _index_of(r"^perceiver\.layers\.(\d+)\.", state)
    if depth:
        out["perceiver_depth"] = depth[-1] + 1
    for key, name, dims in (
        ("perceiver.latents", "perceiver_num_latents", 0),
        ("perceiver.frame_embs", "max_num_frames", 0),
        ("perceiver.media_time_embs", "max_num_media", 0),
    ):
        if key in state:
            out[name] = int(state[key].shape[dims])
    q = _first(state, r"^perceiver\.layers\.0\.(0\.)?to_q\.weight$")
    if q is not None:
        out["perceiver_dim_head"] = _head_width(int(q.shape[0]), perceiver_heads, "perceiver")
    q = _first(state, r"^lang_encoder\..*gated_cross_attn_layers?[.\d]*\.attn\.to_q\.weight$")
    if q is not None:
        out["xattn_dim_head"] = _head_width(int(q.shape[0]), xattn_heads, "cross-attention")
    ff = _first(
        state,
        r"^perceiver\.layers\.0\.(1|feed_forward)\.1\.weight$",
        r"^lang_encoder\..*gated_cross_attn_layers?[.\d]*\.(ff|feed_forward)\.1\.weight$",
    )
    if ff is not None and ff.shape[0] % ff.shape[1] == 0:
        out["ff_mult"] = int(ff.shape[0] // ff.shape[1])
    return out


def _head_width(inner: int, heads: int, where: str) -> int:
    if inner % heads:
        raise SyphusError(
            f"checkpoint {where} has {inner} attention features, not divisible by {heads} heads"
        )
    return inner // heads


def checkpoint_config(fields: dict, state: dict[str, torch.Tensor], where: str = "checkpoint"):
    """The ``OtterConfig`` for importing ``state``: a named or JSON base (``name``), the
    architecture the weights show, then the fields given explicitly (``lm``, ``vision_encoder``)."""
    from trainer.model.configuration_otter import OtterConfig

    fields = dict(fields)
    name = fields.pop("name", None)
    try:
        base = OtterConfig.from_named(name) if name else OtterConfig()
        heads = {
            "perceiver_heads": int(fields.get("perceiver_heads", base.perceiver_heads)),
            "xattn_heads": int(fields.get("xattn_heads", base.xattn_heads)),
        }
        try:
            shown = infer_architecture(state, **heads)
        except SyphusError as e:
            raise SyphusError(f"{where}: {e}") from e
        merged = {**shown, **fields}
        return OtterConfig.from_named(name, **merged) if name else OtterConfig(**merged)
    except TypeError as e:
        raise SyphusError(f"model settings for {where}: {e}") from e


def is_saved_otter(path: str | Path) -> bool:
    """A folder written by ``save_otter`` (this project's model type in its config.json)."""
    from trainer.model.configuration_otter import OtterConfig

    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("model_type") == OtterConfig.model_type
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False


def import_checkpoint(source: str | Path, fields, *, layout: str | None = None):
    """Build an Otter around the LM and vision encoder named in ``fields`` (a dict of
    ``OtterConfig`` fields, or an ``OtterConfig``) and load an OpenFlamingo v2 ``checkpoint.pt`` or
    an Otter HF folder over it. Returns (model, tokenizer, image_processor, LoadReport).

    Weights the checkpoint lacks (an OpenFlamingo training checkpoint holds only the trained parts)
    keep those of the given LM and vision encoder; a checkpoint weight the model has no place
    for is an error, except buffers older library versions saved (``position_ids``, ...).
    """
    from trainer.model.modeling_otter import OtterConfig, build_otter

    source = Path(source)
    if not source.exists():
        raise SyphusError(f"{source}: checkpoint not found")
    if is_saved_otter(source):
        raise SyphusError(f"{source}: already a model folder written by syphus; use it as it is")
    state = read_state_dict(source)
    try:
        layout = layout or detect_layout(state)
    except SyphusError as e:
        raise SyphusError(f"{source}: {e}") from e
    config = fields if isinstance(fields, OtterConfig) else checkpoint_config(fields, state, str(source))
    model, tokenizer, processor = build_otter(config)
    hint = "are the LM and vision encoder the ones this checkpoint was trained with?"
    try:
        report = load_flamingo_checkpoint(model, state, layout=layout, tokenizer=tokenizer)
    except SyphusError as e:
        raise SyphusError(f"{source}: {str(e).removeprefix('checkpoint: ')}", hint=hint) from e
    report.unexpected = [n for n in report.unexpected if not n.endswith(_STALE_BUFFERS)]
    if report.unexpected:
        raise SyphusError(
            f"{source}: {len(report.unexpected)} checkpoint weights have no place in the model, "
            f"e.g. '{report.unexpected[0]}'",
            hint=hint,
        )
    return model, tokenizer, processor, report


def init_model(init_from: str | Path, fields: dict):
    """``init_from`` of the training config: a folder written by ``save_otter`` loads as it is;
    an OpenFlamingo ``checkpoint.pt`` or an Otter HF folder is imported over the model that
    ``fields`` (the config's ``model`` section: its ``lm`` and ``vision_encoder``) describes."""
    from trainer.model.modeling_otter import load_otter

    path = Path(init_from)
    if not path.exists():
        raise SyphusError(f"training config field 'init_from': {path} not found")
    if is_saved_otter(path):
        return load_otter(path)
    model, tokenizer, processor, _ = import_checkpoint(path, fields)
    return model, tokenizer, processor


def convert_checkpoint(
    source: str | Path, config, out: str | Path, *, layout: str | None = None
) -> LoadReport:
    """Import an OpenFlamingo v2 or Otter checkpoint (see ``import_checkpoint``; ``config`` is an
    ``OtterConfig`` or a dict of its fields) and save it as one new ``save_otter`` folder at
    ``out``. The folder appears whole or not at all; an existing ``out`` is never touched."""
    from trainer.model.modeling_otter import save_otter

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SyphusError(f"{out}: already exists; give --out a new folder")
    model, tokenizer, processor, report = import_checkpoint(source, config, layout=layout)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_otter(tmp, model, tokenizer, processor)
        if out.exists():
            out.rmdir()  # the empty folder checked above
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return report
