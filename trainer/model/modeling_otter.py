"""The Otter model (OpenFlamingo architecture) as a Hugging Face ``PreTrainedModel``.

frozen vision encoder -> perceiver resampler (per image) -> gated cross-attention blocks run just
before every N-th decoder layer of a frozen causal LM (Flamingo, arXiv 2204.14198; OpenFlamingo,
arXiv 2308.01390; Otter, arXiv 2305.03726).

Shapes: ``vision_x`` [B, T_img, F, C, H, W] (in-context images on T, video frames on F), ``lang_x``
[B, L] with one ``<image>`` token per image on T. A text token attends only to the latest image at
or before it; tokens before any image attend to none.

The cross-attention blocks are attached with forward pre-hooks on the chosen decoder layers, so
the LM keeps its own module tree and parameter names (``lang_model.*`` is a plain HF checkpoint).
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from schemas.errors import SyphusError
from trainer.model.configuration_otter import OtterConfig
from trainer.model.cross_attention import GatedCrossAttentionBlock, media_text_time
from trainer.model.language import add_special_tokens, find_decoder_layers, load_tokenizer_and_lm
from trainer.model.loss import token_loss
from trainer.model.perceiver import PerceiverResampler
from trainer.model.vision import OtterImageProcessor, build_vision_encoder


def _cache_length(past_key_values) -> int:
    if past_key_values is None:
        return 0
    if hasattr(past_key_values, "get_seq_length"):
        return int(past_key_values.get_seq_length())
    return int(past_key_values[0][0].shape[-2]) if len(past_key_values) else 0


def _lm_from_config(lm_config: dict) -> nn.Module:
    cfg = dict(lm_config)
    model_type = cfg.pop("model_type")
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg))


class OtterForConditionalGeneration(PreTrainedModel):
    """Vision encoder + perceiver + gated cross-attention around a causal LM.

    Build with ``build_otter`` (loads pretrained parts, adds special tokens) or load a saved folder
    with ``load_otter`` / ``from_pretrained``. Constructing from a config alone gives the
    architecture with random weights for every part.
    """

    config_class = OtterConfig
    base_model_prefix = "otter"
    main_input_name = "lang_x"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["GatedCrossAttentionBlock", "PerceiverLayer"]

    def __init__(self, config: OtterConfig, *, lang_model: nn.Module | None = None, vision=None):
        super().__init__(config)
        if vision is None:
            vision = build_vision_encoder(
                config.vision_encoder,
                image_size=config.image_size,
                tiny=config.tiny_vision,
                vision_config=config.vision_config,
                pretrained=False,
            )
        if lang_model is None:
            if not config.lm_config:
                raise SyphusError("OtterConfig.lm_config is empty: build the model with build_otter(config)")
            lang_model = _lm_from_config(config.lm_config)
        self.vision_encoder = vision.encoder
        self.lang_model = lang_model
        vis_dim = vision.encoder.dim
        lm_dim = self._lm_hidden_size()
        self.perceiver = PerceiverResampler(
            vis_dim,
            depth=config.perceiver_depth,
            heads=config.perceiver_heads,
            dim_head=config.perceiver_dim_head,
            num_latents=config.perceiver_num_latents,
            max_num_frames=config.max_num_frames,
            max_num_media=config.max_num_media,
            ff_mult=config.ff_mult,
        )
        self.decoder_layers_path, layers = find_decoder_layers(self.lang_model)
        every = int(config.cross_attn_every_n_layers)
        if every < 1:
            raise SyphusError(f"cross_attn_every_n_layers must be >= 1, got {every}")
        # Same placement as OpenFlamingo: before layer i whenever (i + 1) % every == 0.
        self.xattn_layer_indices = [i for i in range(len(layers)) if (i + 1) % every == 0]
        self.gated_cross_attn_layers = nn.ModuleList(
            GatedCrossAttentionBlock(
                lm_dim, vis_dim, config.xattn_heads, config.xattn_dim_head, config.ff_mult
            )
            for _ in self.xattn_layer_indices
        )
        for block_index, layer_index in enumerate(self.xattn_layer_indices):
            layers[layer_index].register_forward_pre_hook(
                functools.partial(self._cross_attention_hook, block_index), with_kwargs=True
            )
        self._conditioning: tuple[torch.Tensor | None, torch.Tensor] | None = None
        lm_params = inspect.signature(self.lang_model.forward).parameters
        self._lm_takes_position_ids = "position_ids" in lm_params
        # Generation needs the last position's logits only (HF LMs skip the rest of the LM head).
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in lm_params else {}
        self.gradient_checkpointing = False
        config.vision_dim = vis_dim
        if config.lora:
            self._inject_lora(config.lora)
        self.post_init()

    # --- plumbing -------------------------------------------------------------------------
    def _lm_hidden_size(self) -> int:
        cfg = self.lang_model.config
        for attr in ("hidden_size", "d_model", "n_embd"):
            if isinstance(getattr(cfg, attr, None), int):
                return getattr(cfg, attr)
        raise SyphusError(f"lm {type(self.lang_model).__name__}: cannot tell its hidden size from its config")

    def _init_weights(self, module: nn.Module) -> None:
        # Every part initialises itself when constructed (gates at 0, latents ~ N(0, 1)); pretrained
        # parts must not be re-initialised here.
        return

    def get_input_embeddings(self) -> nn.Module:
        return self.lang_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.lang_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lang_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lang_model.set_output_embeddings(value)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs) -> None:
        """Checkpoint activations of the LM decoder layers (their cross-attention pre-hooks run inside
        the checkpointed call) and of the perceiver layers."""
        self._activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)
        self.perceiver.gradient_checkpointing = True
        # A frozen LM's embedding output needs grad for checkpointed layers to backpropagate into
        # cross-attention blocks when the embeddings themselves are frozen.
        self.lang_model.enable_input_require_grads()

    def gradient_checkpointing_disable(self) -> None:
        self._activation_checkpointing_disable()
        self.perceiver.gradient_checkpointing = False

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen vision encoder stays in eval mode (batch-norm statistics must not drift).
        if not any(p.requires_grad for p in self.vision_encoder.parameters()):
            self.vision_encoder.eval()
        return self

    def _cross_attention_hook(self, block_index: int, module, args, kwargs):
        if self._conditioning is None:
            return None
        media, text_time = self._conditioning
        block = self.gated_cross_attn_layers[block_index]
        if args:
            return (block(args[0], media, text_time), *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = block(kwargs["hidden_states"], media, text_time)
        return args, kwargs

    # --- vision -----------------------------------------------------------------------------
    def encode_images(self, vision_x: torch.Tensor) -> torch.Tensor:
        """[B, T, F, C, H, W] pixels -> [B, T, num_latents, D_vis] visual tokens."""
        if vision_x.ndim != 6:
            raise SyphusError(f"vision_x must be [B, T_img, F, C, H, W], got shape {tuple(vision_x.shape)}")
        b, t, f = vision_x.shape[:3]
        pixels = vision_x.reshape(b * t * f, *vision_x.shape[3:])
        param = next(self.vision_encoder.parameters())
        pixels = pixels.to(device=param.device, dtype=param.dtype)
        train_vision = any(p.requires_grad for p in self.vision_encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and train_vision):
            feats = self.vision_encoder(pixels)
        feats = feats.reshape(b, t, f, *feats.shape[1:])
        return self.perceiver(feats.to(self.perceiver.latents.dtype))

    # --- forward ----------------------------------------------------------------------------
    def forward(
        self,
        vision_x: torch.Tensor | None = None,
        lang_x: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool = False,
        media: torch.Tensor | None = None,
        media_offset: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **lm_kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits for ``lang_x`` conditioned on ``vision_x``; loss over ``labels`` != -100.

        vision_x: [B, T_img, F, C, H, W] or None (text only); lang_x: [B, L]; attention_mask: [B, L]
        (or [B, cache+L] with a KV cache); labels: [B, L] aligned with lang_x (shifted inside).
        media: precomputed ``encode_images(vision_x)``, used instead of vision_x.
        media_offset: [B] number of ``<image>`` tokens already in the KV-cached prefix; with a
        non-empty cache it defaults to T_img (all tokens see the last image).
        """
        if lang_x is None:
            raise SyphusError("forward needs lang_x (token ids [B, L])")
        if media is None and vision_x is not None and vision_x.shape[1] > 0:
            media = self.encode_images(vision_x)
        if media is not None and media.shape[1] == 0:
            media = None  # a batch of text-only samples (T_img = 0)
        cached = _cache_length(past_key_values)
        if media_offset is None and cached > 0 and media is not None:
            media_offset = torch.full(
                (lang_x.shape[0],), media.shape[1], device=lang_x.device, dtype=torch.long
            )
        text_time = media_text_time(lang_x, self.config.media_token_id, media_offset)
        if media is not None and lang_x.numel():
            n_img = media.shape[1]
            worst = int(text_time.max())
            if worst > n_img:
                row = int(text_time.max(dim=1).values.argmax())
                raise SyphusError(
                    f"lang_x row {row} has {worst} <image> tokens but vision_x holds only {n_img} images on T"
                )
        if position_ids is None and attention_mask is not None and self._lm_takes_position_ids:
            # Left padding: positions count real tokens only (also right for right padding).
            full = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            position_ids = full[:, -lang_x.shape[1] :]
        lm_inputs = dict(input_ids=lang_x, attention_mask=attention_mask, past_key_values=past_key_values)
        if position_ids is not None and self._lm_takes_position_ids:
            lm_inputs["position_ids"] = position_ids
        self._conditioning = (media, text_time)
        try:
            out = self.lang_model(**lm_inputs, use_cache=use_cache, **lm_kwargs)
        finally:
            self._conditioning = None
        loss = None
        if labels is not None:
            loss = token_loss(out.logits, labels)[0]
        return CausalLMOutputWithPast(
            loss=loss,
            logits=out.logits,
            past_key_values=out.past_key_values if use_cache else None,
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )

    # --- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        vision_x: torch.Tensor | None,
        lang_x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.LongTensor:
        """Greedy or sampled continuation of left-padded prompts; returns [B, L + new] token ids.

        The images are encoded once; every decoding step (cached or not) cross-attends to the
        latest image before it, so with a KV cache the answer still sees the images (the original
        Otter lost them after the first token). Stops a row at ``eos_token_id`` (default:
        ``<|endofchunk|>`` and the tokenizer's eos); finished rows are padded with ``pad_token_id``.
        """
        media = self.encode_images(vision_x) if vision_x is not None and vision_x.shape[1] > 0 else None
        ids = lang_x
        mask = attention_mask if attention_mask is not None else torch.ones_like(lang_x)
        if eos_token_id is None:
            eos_token_id = [self.config.endofchunk_token_id]
            lm_eos = getattr(self.lang_model.config, "eos_token_id", None)
            eos_token_id += lm_eos if isinstance(lm_eos, list) else ([lm_eos] if lm_eos is not None else [])
        eos = torch.tensor(
            eos_token_id if isinstance(eos_token_id, list) else [eos_token_id], device=ids.device
        )
        pad = pad_token_id if pad_token_id is not None else (self.config.pad_token_id or 0)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        past = None
        step_ids = ids
        for _ in range(max_new_tokens):
            if use_cache and past is not None:
                offset = (ids[:, :-1] == self.config.media_token_id).sum(dim=1)
                out = self(
                    lang_x=step_ids,
                    attention_mask=mask,
                    media=media,
                    media_offset=offset,
                    past_key_values=past,
                    use_cache=True,
                    **self._last_logits_only,
                )
            else:
                out = self(
                    lang_x=ids,
                    attention_mask=mask,
                    media=media,
                    use_cache=use_cache,
                    **self._last_logits_only,
                )
            past = out.past_key_values if use_cache else None
            logits = out.logits[:, -1, :].float()
            # There is no image to attach to a generated <image>.
            logits[:, self.config.media_token_id] = -float("inf")
            nxt = _pick_next(logits, do_sample, temperature, top_k, top_p, generator)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, (~done).long()[:, None].to(mask.dtype)], dim=1)
            done = done | torch.isin(nxt, eos)
            step_ids = nxt[:, None]
            if bool(done.all()):
                break
        return ids

    # --- training setup ---------------------------------------------------------------------
    def set_trainable(
        self, lm: bool = False, vision: bool = False, lora: dict | None = None
    ) -> dict[str, int]:
        """Choose what trains: always the perceiver, the cross-attention blocks and the LM input and
        output embeddings; plus the whole LM (``lm``), the vision encoder (``vision``) and/or LoRA
        adapters on the LM attention and cross-attention projections (``lora``: r, alpha, dropout,
        target_modules). If the LM ties its input and output embeddings, the one shared matrix
        trains (it stays tied). Returns trainable parameter counts per group."""
        if lora is not None:
            self._inject_lora(lora)
            self.config.lora = dict(lora)
        self.requires_grad_(False)
        self.perceiver.requires_grad_(True)
        self.gated_cross_attn_layers.requires_grad_(True)
        self.get_input_embeddings().requires_grad_(True)
        out_emb = self.get_output_embeddings()
        if out_emb is not None:
            out_emb.requires_grad_(True)
        if lm:
            self.lang_model.requires_grad_(True)
        if vision:
            self.vision_encoder.requires_grad_(True)
        for name, p in self.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
        self.train(self.training)
        return self.trainable_parameter_counts()

    def trainable_parameter_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, p in self.named_parameters():
            if p.requires_grad:
                group = "lora" if "lora_" in name else name.split(".")[0]
                counts[group] = counts.get(group, 0) + p.numel()
        return counts

    def optimizer_param_groups(self, weight_decay: float) -> list[dict]:
        """Trainable parameters split for AdamW: weight decay only on the cross-attention blocks'
        weight matrices (as OpenFlamingo), none on gates, norms, latents, embeddings or adapters."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("gated_cross_attn_layers.") and p.ndim >= 2 and "lora_" not in name:
                decay.append(p)
            else:
                no_decay.append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _inject_lora(self, lora: dict) -> None:
        if any("lora_" in n for n, _ in self.named_parameters()):
            return
        from peft import LoraConfig, inject_adapter_in_model

        targets = lora.get("target_modules") or _default_lora_targets(self.lang_model)
        # Regex over full module names: the LM's attention projections and the cross-attention q/kv.
        pattern = (
            r"^(lang_model\..*\.("
            + "|".join(targets)
            + r")|gated_cross_attn_layers\.\d+\.attn\.(to_q|to_kv))$"
        )
        cfg = LoraConfig(
            r=int(lora.get("r", 8)),
            lora_alpha=int(lora.get("alpha", lora.get("lora_alpha", 16))),
            lora_dropout=float(lora.get("dropout", lora.get("lora_dropout", 0.0))),
            target_modules=pattern,
        )
        inject_adapter_in_model(cfg, self)


def _default_lora_targets(lm: nn.Module) -> list[str]:
    names = {n.rsplit(".", 1)[-1] for n, m in lm.named_modules() if isinstance(m, nn.Linear)}
    names |= {n.rsplit(".", 1)[-1] for n, m in lm.named_modules() if type(m).__name__ == "Conv1D"}
    for family in (["q_proj", "v_proj"], ["c_attn"], ["Wqkv"], ["query_key_value"]):
        if set(family) <= names:
            return family
    raise SyphusError(
        f"lora: cannot guess attention projections of {type(lm).__name__}; set lora.target_modules"
    )


def _pick_next(logits, do_sample, temperature, top_k, top_p, generator) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(dim=-1)
    logits = logits / max(temperature, 1e-5)
    if top_k and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # Drop tokens once the mass before them already exceeds top_p (always keeps the best one).
        drop = probs.cumsum(-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(drop, -float("inf"))
        logits = torch.full_like(logits, -float("inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


# --- building, saving, loading --------------------------------------------------------------
def build_otter(config: OtterConfig | str):
    """Build a fresh Otter from pretrained parts: returns (model, tokenizer, image_processor).

    Loads the LM and its tokenizer, adds ``<image>``, ``<|endofchunk|>``, ``<answer>`` (and a pad
    token if missing), resizes the embeddings, loads the vision encoder, and freezes everything
    but the default trainable set (see ``set_trainable``).
    """
    if isinstance(config, str):
        config = OtterConfig.from_named(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.init_seed))
        tokenizer, lm = load_tokenizer_and_lm(config.lm, config.tiny_lm, pretrained=True, lm_config=None)
        config.base_vocab_size = len(tokenizer)
        ids = add_special_tokens(tokenizer)
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        vision = build_vision_encoder(
            config.vision_encoder,
            image_size=config.image_size,
            tiny=config.tiny_vision,
            vision_config=config.vision_config,
            pretrained=True,
        )
        config.lm_config = lm.config.to_dict()
        config.vision_config = vision.vision_config
        config.image_size = vision.processor.image_size
        for key, value in ids.items():
            setattr(config, key, value)
        lm_eos = getattr(lm.config, "eos_token_id", None)
        config.eos_token_id = lm_eos
        lora = config.lora
        config.lora = None  # injected after construction so the pretrained weights stay untouched
        model = OtterForConditionalGeneration(config, lang_model=lm, vision=vision)
    model.set_trainable(lora=lora)
    return model, tokenizer, vision.processor


def save_otter(folder: str | Path, model: OtterForConditionalGeneration, tokenizer, image_processor) -> None:
    """One folder: config.json + model.safetensors + tokenizer files + preprocessor_config.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)


def load_otter(path: str | Path, **from_pretrained_kwargs):
    """Load a folder written by ``save_otter``: returns (model, tokenizer, image_processor)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise SyphusError(f"{path}: not an Otter folder (no config.json)")
    # Weights come only from safetensors: a pickled .bin/.pt is never read, even weights-only.
    if not any((path / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = (
            f" (found {', '.join(pickled)}, which is not read: pickled weights can run code)"
            if pickled
            else ""
        )
        raise SyphusError(
            f"{path}: no model.safetensors{found}; save the model with save_pretrained(safe_serialization=True)"
        )
    from safetensors import SafetensorError

    # A damaged or incomplete folder is the user's to fix: say which part failed, on one line
    # (TypeError: a config.json that is not an object).
    unreadable = (OSError, ValueError, KeyError, TypeError, SafetensorError)
    try:
        model = OtterForConditionalGeneration.from_pretrained(
            str(path), **{"use_safetensors": True, **from_pretrained_kwargs}
        )
    except unreadable as e:
        raise SyphusError(f"{path}: cannot load the model's config or weights ({_one_line(e)})") from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except unreadable as e:
        raise SyphusError(f"{path}: cannot load the tokenizer ({_one_line(e)})") from e
    try:
        image_processor = OtterImageProcessor.from_pretrained(path)
    except unreadable as e:
        raise SyphusError(f"{path}: cannot load the image processor ({_one_line(e)})") from e
    return model, tokenizer, image_processor


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:limit]}"
