"""``ask``: prompts in, replies out, through the request log (cache, budget, kill -9 and resume)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import duckdb
import pytest

from curation.store import Corpus
from syphus.engine.ask import NOT_SENT_BUDGET, Prompt, ask
from syphus.engine.backends import FatalBackendError
from syphus.engine.pipeline import GenerateOptions
from syphus.engine.requestlog import RequestLog
from syphus.testing.openai_server import answer_for


def prompts(n: int, extra: str = "judge:v1", start: int = 0) -> list[Prompt]:
    return [
        Prompt(
            extra, [{"role": "user", "content": f"Score pair number {i}."}], source_id=f"p{i}", task="score"
        )
        for i in range(start, start + n)
    ]


def opts(srv, **kw) -> GenerateOptions:
    return GenerateOptions(model=kw.pop("model", "test-model"), api_base=srv.base_url,
                           max_tokens=kw.pop("max_tokens", 64), **kw)  # fmt: skip


def test_cached_prompt_is_not_sent_again(serve, tmp_path):
    srv = serve()
    store = tmp_path / "results" / ".requests"  # a cache folder ask makes into a corpus
    first = ask(prompts(3), store=store, opts=opts(srv))
    assert first.status == "done" and first.summary["sent"] == 3
    assert [r.text for r in first.replies] == [answer_for(p.messages) for p in prompts(3)]
    assert not any(r.cached for r in first.replies)

    # the same three (one of them twice) and one new: only the new one is asked
    again = prompts(3) + prompts(1, start=1) + prompts(1, start=3)
    second = ask(again, store=store, opts=opts(srv))
    assert [r.cached for r in second.replies] == [True, True, True, True, False]
    assert [r.text for r in second.replies] == [answer_for(p.messages) for p in again]
    assert second.summary["sent"] == 1 and second.summary["cached"] == 3
    assert sorted(srv.state.requests.values()) == [1, 1, 1, 1]

    # another key_extra is another question: asked again, under its own key
    third = ask(prompts(1, extra="judge:v2"), store=store, opts=opts(srv))
    assert not third.replies[0].cached and third.replies[0].key != first.replies[0].key
    assert sum(srv.state.requests.values()) == 5

    with Corpus(store) as c:
        rows = c.con.execute("SELECT task, source_id FROM requests ORDER BY source_id").fetchall()
        assert ("score", "p0") in rows and len(rows) == 5
        assert c.con.execute("SELECT count(*) FROM instructions").fetchone()[0] == 0


def test_failed_prompt_is_returned_not_raised(serve, tmp_path):
    srv = serve()
    ps = prompts(2) + [Prompt("x", [{"role": "user", "content": "FAULT:500 please"}])]
    res = ask(ps, store=tmp_path / "c", opts=opts(srv, max_attempts=2))
    assert res.status == "done_with_errors" and res.summary["errors"] == 1
    assert res.replies[0].text and res.replies[1].text
    assert res.replies[2].text is None and "500" in res.replies[2].error
    # the error is not a cached answer: a rerun asks that prompt again, and only that one
    before = sum(srv.state.requests.values())
    again = ask(ps, store=tmp_path / "c", opts=opts(srv, max_attempts=1))
    assert [r.cached for r in again.replies] == [True, True, False]
    assert sum(srv.state.requests.values()) == before + 1


def test_fatal_backend_error_raises(serve, tmp_path, monkeypatch):
    monkeypatch.delenv("SYPHUS_API_KEY", raising=False)
    srv = serve(api_key="sk-right")
    with pytest.raises(FatalBackendError, match="401"):
        ask(prompts(2), store=tmp_path / "c", opts=opts(srv))


def test_max_cost_stops_with_status_budget(serve, tmp_path):
    srv = serve()
    ps = prompts(30)
    seen = []
    res = ask(ps, store=tmp_path / "c", opts=opts(srv, model="gpt-4o", max_tokens=100, max_cost=0.005,
                                                   concurrency=2), on_reply=lambda p, r: seen.append(r))  # fmt: skip
    assert res.status == "budget"
    sent = [r for r in res.replies if r.text is not None]
    unsent = [r for r in res.replies if r.error == NOT_SENT_BUDGET]
    assert sent and unsent and len(sent) + len(unsent) == 30
    assert res.summary["not_sent"] == len(unsent) and res.summary["cost_usd"] <= 0.005
    assert len(seen) == 30  # the caller heard of every prompt, the unsent ones included
    # a rerun with room for the rest pays only for those
    more = ask(ps, store=tmp_path / "c", opts=opts(srv, model="gpt-4o", max_tokens=100, max_cost=1.0))
    assert more.status == "done" and more.summary["sent"] == len(unsent)
    assert sum(r.cached for r in more.replies) == len(sent)
    assert max(srv.state.requests.values()) == 1


ASK_SCRIPT = textwrap.dedent(
    """
    import sys
    from syphus.engine.ask import Prompt, ask
    from syphus.engine.pipeline import GenerateOptions

    base, store, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ps = [Prompt("judge:v1", [{"role": "user", "content": f"Score pair number {i}."}]) for i in range(n)]
    opts = GenerateOptions(model="test-model", api_base=base, max_tokens=64, concurrency=8)
    ask(ps, store=store, opts=opts, on_reply=lambda p, r: print(r.key, flush=True))
    """
)


def test_kill9_then_rerun_keeps_every_received_reply(serve, tmp_path):
    srv = serve(latency="const:0.02")
    script = tmp_path / "ask_script.py"
    script.write_text(ASK_SCRIPT)
    store, n = tmp_path / "cache", 400
    p = subprocess.Popen([sys.executable, str(script), srv.base_url, str(store), str(n)],
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    received = []
    for line in p.stdout:  # kill -9 once it has received some replies, mid-run
        received.append(line.strip())
        if len(received) == 60:
            os.kill(p.pid, signal.SIGKILL)
            break
    p.wait()
    p.stdout.close()
    assert p.returncode == -signal.SIGKILL
    asked_before = sum(srv.state.requests.values())
    assert asked_before < n  # it really was stopped mid-run

    res = ask(prompts(n), store=store, opts=opts(srv, concurrency=8))
    assert res.status == "done" and all(r.text for r in res.replies)
    cached = {r.key for r in res.replies if r.cached}
    assert set(received) <= cached  # every reply the killed run received was kept
    assert res.summary["sent"] == n - len(cached)
    # nothing is paid twice: each question answered once, except a reply lost in the kill itself
    assert sum(srv.state.completed.values()) <= n + (asked_before - len(received))
    with Corpus(store) as c:
        RequestLog(c).close()
        assert c.con.execute("SELECT count(*) FROM requests WHERE status='done'").fetchone()[0] == n


def test_ask_uses_an_open_corpus_and_leaves_its_pairs_alone(serve, tmp_path):
    srv = serve()
    with Corpus(tmp_path / "c") as corpus:
        res = ask(prompts(2), store=corpus, opts=opts(srv))
        assert res.status == "done"
        runs = corpus.con.execute("SELECT command, status FROM runs").fetchall()
    assert runs == [("ask", "done")]
    con = duckdb.connect(str(tmp_path / "c" / "corpus.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM requests WHERE ingested").fetchone()[0] == 2
    con.close()
