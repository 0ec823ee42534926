"""One vocabulary of offline model names, one loader per pretrained model, ``syphus models``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.trainer.train.helpers import REPO, shapes_vqa, train_env, write_shards


def syphus(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "syphus.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=REPO,
        timeout=timeout,
    )


def test_models_command_lists_each_model_with_its_names_and_stages():
    proc = syphus("models", "--json")
    assert proc.returncode == 0, proc.stderr
    models = {m["name"]: m for m in json.loads(proc.stdout)}
    smol = models["smollm2-135m-instruct"]
    assert {"smollm2", "local/smollm2-135m"} <= set(smol["aliases"])
    assert any("generate" in u for u in smol["uses"]) and any("train" in u for u in smol["uses"])
    effnet = models["efficientnet-lite0"]
    assert "effnet:lite0" in effnet["aliases"]
    assert any("retrieve" in u for u in effnet["uses"]) and any("train" in u for u in effnet["uses"])
    assert "st:all-MiniLM-L6-v2" in models["all-minilm-l6-v2"]["aliases"]
    # the packages the suite runs on are installed here
    assert (
        effnet["available"] and models["all-minilm-l6-v2"]["available"] and models["tiny-llama"]["available"]
    )

    table = syphus("models")
    assert table.returncode == 0, table.stderr
    assert "efficientnet-lite0" in table.stdout and "effnet:lite0" in table.stdout


def test_every_stage_takes_every_name_of_efficientnet_and_loads_the_same_weights():
    from curation.embed.models import embedder_key, load_embedder
    from trainer.model.vision import build_vision_encoder

    embedder = load_embedder("efficientnet-lite0")
    assert embedder.name == "effnet:lite0"  # vectors cached before the new name stay valid
    assert embedder_key("EfficientNet-Lite0") == embedder_key("effnet:lite0") == "effnet:lite0"
    for name in ("efficientnet-lite0", "effnet:lite0"):
        built = build_vision_encoder(name, image_size=None, tiny={}, vision_config=None, pretrained=True)
        for key, value in embedder.model.state_dict().items():
            assert torch.equal(built.encoder.model.state_dict()[key], value), (name, key)


def test_bundled_llm_names_run_in_process_and_cost_nothing():
    from syphus.engine.backends import make_backend
    from syphus.engine.local import LocalBackend
    from syphus.engine.pricing import price_of

    for name in ("smollm2", "local/smollm2-135m", "smollm2-135m-instruct"):
        assert isinstance(make_backend(name, api_base=None, concurrency=1, timeout=5), LocalBackend)
        assert price_of(name).input_per_token == 0.0
    # a served model that happens to share the name still goes to the server given
    assert not isinstance(
        make_backend("smollm2", api_base="http://127.0.0.1:9/v1", concurrency=1, timeout=5), LocalBackend
    )


@pytest.mark.slow
def test_train_converts_smollm2_on_a_fresh_machine_and_generation_reuses_it(tmp_path):
    # Before, the trainer's own GGUF conversion raised "not serializable" unless the generation
    # engine had converted the GGUF first into the shared cache.
    cache = tmp_path / "cache"
    rows, images = shapes_vqa(8, seed=3)
    write_shards(tmp_path / "shards", rows, images)
    (tmp_path / "mix.yaml").write_text("IMAGE_TEXT:\n  shapes:\n    shards_path: shards\n")
    (tmp_path / "t.yaml").write_text(
        "model: {name: tiny, lm: local/smollm2-135m, cross_attn_every_n_layers: 15}\n"
        "batch_size: 2\nmax_steps: 1\nzero_stage: 0\ntorch_threads: 2\n"
    )
    env = {**train_env(), "SYPHUS_CACHE": str(cache)}
    args = ["train", "--mix", str(tmp_path / "mix.yaml"), "--config", str(tmp_path / "t.yaml")]
    proc = syphus(*args, "--out", str(tmp_path / "run"), "--cpu", env=env, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["smollm2-135m-instruct"]  # no stray temp folder
    weights = cache / "smollm2-135m-instruct" / "model.safetensors"
    written = weights.stat().st_mtime_ns

    check = (
        "from syphus.engine.local import load_smollm2; tok, lm = load_smollm2('local/smollm2-135m'); "
        "print(type(lm).__name__, lm.config.vocab_size)"
    )
    got = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.split() == ["LlamaForCausalLM", "49152"]
    assert weights.stat().st_mtime_ns == written  # loaded, not converted again


def test_open_clip_tag_for_the_vision_encoder_is_never_downloaded(tmp_path, monkeypatch):
    from schemas.errors import SyphusError
    from trainer.model.vision import build_vision_encoder

    # An empty cache: the embedder and the Otter vision encoder both refuse instead of fetching.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(SyphusError, match="not on disk.*open_clip:RN50:/path/to/weights"):
        build_vision_encoder(
            "open_clip:RN50:openai", image_size=None, tiny={}, vision_config=None, pretrained=True
        )
