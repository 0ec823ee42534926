"""The litellm backend and the CLI, against the local server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from syphus.engine.backends import parse_retry_after

ECHO = "syphus.testing.echo_task:EchoTask"


def test_retry_after_header_forms():
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1  # a date in the past: no wait


def test_litellm_backend_with_retries(serve, notes, tmp_path, run_generate):
    srv = serve(first_faults=["500"])
    s = run_generate(srv, notes(3), tmp_path / "c", model="openai/test-model", backend="litellm")
    assert (s["done"], s["pairs"], s["retries"]) == (3, 6, 3)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "syphus.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)  # fmt: skip


def test_cli_generate_dry_run_budget_and_fatal(serve, notes, tmp_path):
    srv = serve(models=["gpt-4o"])
    path = str(notes(20))
    base = ["generate", "--task", ECHO, "--annotations", path, "--corpus", str(tmp_path / "c"), "--no-progress",
            "--api-base", srv.base_url, "--max-tokens", "100"]  # fmt: skip
    r = _cli(*base, "--model", "gpt-4o", "--dry-run")
    assert r.returncode == 0 and "to send" in r.stdout and srv.state.total == 0
    r = _cli(*base, "--model", "gpt-4o", "--max-cost", "0.004")
    assert r.returncode == 3 and "max-cost" in r.stderr
    r = _cli(*base, "--model", "gpt-5-nonexistent")
    errors = [line for line in r.stderr.splitlines() if not line.startswith("warning:")]  # missing images
    assert r.returncode == 1 and len(errors) == 1 and "gpt-5-nonexistent" in errors[0]


def test_cli_translate_to_adds_each_language_and_resumes(serve, notes, tmp_path):
    import duckdb

    srv = serve()
    corpus = tmp_path / "c"
    args = ["generate", "--task", ECHO, "--annotations", str(notes(3)), "--corpus", str(corpus), "--no-progress",
            "--api-base", srv.base_url, "--model", "test-model", "--translate-to", "zh,es,ko"]  # fmt: skip
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert all(f"translate {lang}: done" in r.stdout + r.stderr for lang in ("zh", "es", "ko"))
    sent = srv.state.total
    # 3 annotations (2 pairs each), then one translation request per pair and language
    assert sent == 3 + 6 * 3
    con = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    by_lang = dict(con.execute("select lang, count(*) from instructions group by lang").fetchall())
    linked = con.execute(
        "select count(*) from instructions t join instructions s on t.parent_id = s.id "
        "where t.lang != 'en' and s.lang = 'en'"
    ).fetchone()[0]
    con.close()
    assert by_lang == {"en": 6, "zh": 6, "es": 6, "ko": 6}  # 2 pairs per annotation, every one translated
    assert linked == 18  # each translation points at its English pair
    r = _cli(*args)  # the same command again: nothing is asked twice
    assert r.returncode == 0, r.stderr
    assert srv.state.total == sent


def test_local_dtype_follows_the_cpu_and_the_environment(monkeypatch):
    import torch

    from schemas.errors import SyphusError
    from syphus.engine import local

    monkeypatch.delenv("SYPHUS_LOCAL_QUANT", raising=False)
    monkeypatch.setenv("SYPHUS_LOCAL_DTYPE", "auto")
    monkeypatch.setattr(local, "cpu_has_native_bf16", lambda: True)
    assert local.compute_dtype() == torch.bfloat16
    monkeypatch.setattr(local, "cpu_has_native_bf16", lambda: False)
    assert local.compute_dtype() == torch.float32  # emulated bf16 would be slower than fp32
    monkeypatch.setenv("SYPHUS_LOCAL_DTYPE", "bf16")
    assert local.compute_dtype() == torch.bfloat16
    monkeypatch.setenv("SYPHUS_LOCAL_DTYPE", "fp32")
    monkeypatch.setattr(local, "cpu_has_native_bf16", lambda: True)
    assert local.compute_dtype() == torch.float32
    monkeypatch.setenv("SYPHUS_LOCAL_DTYPE", "auto")
    monkeypatch.setenv("SYPHUS_LOCAL_QUANT", "int8")
    assert local.compute_dtype() == torch.float32  # int8 quantisation starts from fp32 weights
    monkeypatch.setenv("SYPHUS_LOCAL_DTYPE", "fp8")
    with pytest.raises(SyphusError, match="SYPHUS_LOCAL_DTYPE"):
        local.compute_dtype()


@pytest.mark.slow
def test_local_smollm2_batches_concurrent_requests(notes, tmp_path):
    import asyncio

    from syphus.engine.backends import ChatRequest
    from syphus.engine.local import LocalBackend

    b = LocalBackend("local/smollm2-135m", gather_s=0.2)

    async def go():
        reqs = [ChatRequest(key=str(i), model="local/smollm2-135m", messages=[{"role": "user", "content": f"Say {i}."}],
                            params={"temperature": 0, "max_tokens": 3}) for i in range(3)]  # fmt: skip
        try:
            return await asyncio.gather(*(b.complete(r) for r in reqs))
        finally:
            await b.aclose()

    out = asyncio.run(go())
    assert b.batches == [3]
    assert all(c.completion_tokens >= 1 and c.text for c in out)
