from __future__ import annotations

from pathlib import Path

import pytest

from syphus.engine.pipeline import GenerateOptions, generate
from syphus.testing.echo_task import EchoTask, write_notes
from syphus.testing.openai_server import OpenAIServer, ServerConfig

ECHO = "syphus.testing.echo_task:EchoTask"


@pytest.fixture
def serve():
    servers = []

    def start(**kw) -> OpenAIServer:
        srv = OpenAIServer(ServerConfig(**kw)).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def notes(tmp_path) -> callable:
    def make(n: int, prefix: str = "note") -> Path:
        return write_notes(tmp_path / f"{prefix}-{n}.jsonl", n, prefix=prefix)

    return make


@pytest.fixture
def run_generate():
    return _run_generate


def _run_generate(srv: OpenAIServer, notes_path: Path, corpus: Path, *, task=None, dry_run=False, **kw):
    opts = GenerateOptions(model=kw.pop("model", "test-model"), api_base=srv.base_url,
                           max_tokens=kw.pop("max_tokens", 64), **kw)  # fmt: skip
    return generate(task or EchoTask(), [notes_path], corpus, opts, dry_run=dry_run)
