"""--batch against the local server's OpenAI Batch and Anthropic Message Batches endpoints."""

from __future__ import annotations

import asyncio

import pytest

from curation.store import Corpus
from syphus.engine.batch import _Api
from syphus.engine.pipeline import GenerateOptions, build_requests, generate, load_annotations
from syphus.engine.requestlog import RequestLog
from syphus.testing.echo_task import EchoTask


def opts(srv, model, **kw):
    return GenerateOptions(model=model, api_base=srv.base_url, batch=True, poll_interval=0.05,
                           max_tokens=64, **kw)  # fmt: skip


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022"])
def test_batch_run_collects_every_reply_at_batch_price(serve, notes, tmp_path, model):
    srv = serve(batch_delay=0.2)
    s = generate(EchoTask(), [notes(6)], tmp_path / "c", opts(srv, model))
    assert (s["done"], s["pairs"], s["errors"]) == (6, 12, 0)
    assert max(srv.state.completed.values()) == 1 and len(srv.state.completed) == 6
    with Corpus(tmp_path / "c") as c:
        assert c.con.execute("SELECT status FROM request_batches").fetchall() == [("collected",)]
        assert c.con.execute("SELECT DISTINCT backend FROM requests").fetchall() == [("batch",)]


def test_batch_resumes_by_stored_batch_id_after_a_crash(serve, notes, tmp_path):
    srv = serve(batch_delay=0.2)
    path = notes(5)
    o = opts(srv, "openai/gpt-4o-mini")
    task = EchoTask()
    reqs, _ = build_requests(task, load_annotations(task, [path], None).annotations, o.model, o.params())
    # a run that submitted its batch and died before collecting it
    with Corpus(tmp_path / "c") as c:
        log = RequestLog(c)
        api = _Api("openai", srv.base_url, None, 10)

        async def submit():
            try:
                return await api.submit(reqs)
            finally:
                await api.aclose()

        bid = asyncio.run(submit())
        log.add_batch(bid, "openai", srv.base_url, o.model, [r.key for r in reqs], "crashed-run")
        log.close()
    s = generate(task, [path], tmp_path / "c", o)
    assert s["done"] == 5 and len(srv.state.batches) == 1  # polled the old batch, submitted nothing new
    assert max(srv.state.requests.values()) == 1
