"""``OtterConfig``: everything needed to rebuild an Otter model, kept apart from the modules
(as transformers models do) so that reading or writing a config needs no torch model code.

``model_type`` stays ``syphus_otter``: folders saved before the split load unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig, PreTrainedConfig

from schemas.errors import SyphusError

# Named configs ship as package data in trainer/configs/.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


class OtterConfig(PreTrainedConfig):
    """Everything needed to rebuild an Otter model; ``lm_config``/``vision_config``/token ids are
    filled in by ``build_otter`` from the components it loaded.

    vision_encoder: ``tiny`` | ``efficientnet-lite0`` | ``open_clip:MODEL:PRETRAINED_OR_PATH`` | ``hf-clip:PATH``
    lm: a Hugging Face causal-LM name/path | ``smollm2`` | ``tiny-llama`` | ``tiny-gpt2``
    """

    model_type = "syphus_otter"

    def __init__(
        self,
        vision_encoder: str = "tiny",
        lm: str = "tiny-llama",
        cross_attn_every_n_layers: int = 1,
        perceiver_depth: int = 6,
        perceiver_heads: int = 8,
        perceiver_dim_head: int = 64,
        perceiver_num_latents: int = 64,
        max_num_frames: int | None = None,
        max_num_media: int | None = None,
        xattn_heads: int = 8,
        xattn_dim_head: int = 64,
        ff_mult: int = 4,
        image_size: int | None = None,
        tiny_vision: dict | None = None,
        tiny_lm: dict | None = None,
        lm_config: dict | None = None,
        vision_config: dict | None = None,
        vision_dim: int | None = None,
        media_token_id: int | None = None,
        endofchunk_token_id: int | None = None,
        answer_token_id: int | None = None,
        lora: dict | None = None,
        init_seed: int = 0,
        base_vocab_size: int | None = None,
        **kwargs,
    ):
        self.vision_encoder = vision_encoder
        self.lm = lm
        self.cross_attn_every_n_layers = cross_attn_every_n_layers
        self.perceiver_depth = perceiver_depth
        self.perceiver_heads = perceiver_heads
        self.perceiver_dim_head = perceiver_dim_head
        self.perceiver_num_latents = perceiver_num_latents
        self.max_num_frames = max_num_frames
        self.max_num_media = max_num_media
        self.xattn_heads = xattn_heads
        self.xattn_dim_head = xattn_dim_head
        self.ff_mult = ff_mult
        self.image_size = image_size
        self.tiny_vision = dict(tiny_vision or {})
        self.tiny_lm = dict(tiny_lm or {})
        self.lm_config = lm_config
        self.vision_config = vision_config
        self.vision_dim = vision_dim
        self.media_token_id = media_token_id
        self.endofchunk_token_id = endofchunk_token_id
        self.answer_token_id = answer_token_id
        self.lora = lora
        self.init_seed = init_seed
        self.base_vocab_size = base_vocab_size  # tokenizer size before the special tokens were added
        super().__init__(**kwargs)

    @classmethod
    def from_named(cls, name_or_path: str, **overrides) -> OtterConfig:
        """A config from ``trainer/configs/<name>.json`` or a JSON file path, with overrides."""
        path = Path(name_or_path)
        if not path.is_file():
            path = CONFIG_DIR / f"{name_or_path}.json"
        if not path.is_file():
            named = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
            raise SyphusError(
                f"model config '{name_or_path}': no such file or named config (named: {', '.join(named)})"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise SyphusError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from e
        data.pop("model_type", None)
        data.update(overrides)
        return cls(**data)


AutoConfig.register(OtterConfig.model_type, OtterConfig)
