"""Every engine behaviour against the local OpenAI-compatible server."""

from __future__ import annotations

import time

import duckdb
import pytest

from schemas.errors import SyphusError
from syphus.engine.pipeline import reparse
from syphus.tasks.base import ResponseParseError
from syphus.testing.echo_task import EchoTask


def rows(corpus, sql):
    con = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_generates_pairs_with_ids_task_images_and_run(serve, notes, tmp_path, run_generate):
    srv = serve()
    s = run_generate(srv, notes(5), tmp_path / "c")
    assert (s["done"], s["pairs"], s["errors"]) == (5, 10, 0)
    got = rows(tmp_path / "c", "SELECT i.task, i.lang, i.source_id, i.run_id, ii.image_id FROM instructions i "
                               "JOIN instruction_images ii ON ii.ins_id = i.id ORDER BY i.id")  # fmt: skip
    assert len(got) == 10 and {r[0] for r in got} == {"ECHO"} and {r[1] for r in got} == {"en"}
    assert all(r[4] == f"IMG_{r[2].split('-')[1]}" for r in got)
    assert rows(tmp_path / "c", "SELECT count(*) FROM runs WHERE command='generate' AND status='done'") == [
        (1,)
    ]


def test_rerun_requests_nothing_finished(serve, notes, tmp_path, run_generate):
    srv = serve()
    path = notes(12)
    run_generate(srv, path, tmp_path / "c", limit=5)
    s = run_generate(srv, path, tmp_path / "c")
    assert (s["already_done"], s["sent"]) == (5, 7)
    assert max(srv.state.requests.values()) == 1 and len(srv.state.requests) == 12
    assert rows(tmp_path / "c", "SELECT count(*) FROM instructions") == [(24,)]


@pytest.mark.parametrize("fault", ["500", "malformed", "reset"])
def test_transient_faults_are_retried(serve, notes, tmp_path, fault, run_generate):
    srv = serve(first_faults=[fault, fault])
    s = run_generate(srv, notes(4), tmp_path / "c")
    assert (s["done"], s["errors"], s["retries"]) == (4, 0, 8)
    assert set(srv.state.requests.values()) == {3}


def test_retry_after_is_honoured(serve, notes, tmp_path, run_generate):
    srv = serve(first_faults=["429"], retry_after=0.6)
    t = time.perf_counter()
    s = run_generate(srv, notes(3), tmp_path / "c")
    assert time.perf_counter() - t >= 0.6
    assert (s["done"], s["retries"]) == (3, 3)


def test_hang_past_timeout_is_abandoned_and_retried(serve, notes, tmp_path, run_generate):
    srv = serve(first_faults=["hang"], hang_s=30)
    t = time.perf_counter()
    s = run_generate(srv, notes(3), tmp_path / "c", timeout=0.3)
    assert time.perf_counter() - t < 10
    assert (s["done"], s["errors"]) == (3, 0)
    assert set(srv.state.requests.values()) == {2}


def test_gives_up_after_max_attempts_and_logs_the_error(serve, notes, tmp_path, run_generate):
    srv = serve(first_faults=["500"] * 10)
    s = run_generate(srv, notes(2), tmp_path / "c", max_attempts=2)
    assert (s["done"], s["errors"], s["status"]) == (0, 2, "done_with_errors")
    got = rows(tmp_path / "c", "SELECT status, attempts, error FROM requests")
    assert all(r[0] == "error" and r[1] == 2 and "500" in r[2] for r in got)


@pytest.mark.parametrize("fault,reason", [("empty", "empty reply"), ("truncated", "finish_reason=length")])
def test_empty_and_truncated_replies_are_quarantined_with_raw(
    serve, notes, tmp_path, fault, reason, run_generate
):
    srv = serve(first_faults=[fault])
    s = run_generate(srv, notes(2), tmp_path / "c")
    assert (s["done"], s["quarantined"], s["pairs"]) == (2, 2, 0)
    q = rows(tmp_path / "c", "SELECT stage, reason, raw FROM quarantine")
    assert len(q) == 2 and all(r[0] == "generate" and reason in r[1] for r in q)
    assert set(srv.state.requests.values()) == {1}  # paid replies are kept, not re-bought


def test_bad_key_fails_fast_without_leaking_it(serve, notes, tmp_path, monkeypatch, run_generate):
    srv = serve(api_key="right-key")
    monkeypatch.setenv("SYPHUS_API_KEY", "wrong-key-123")
    t = time.perf_counter()
    with pytest.raises(SyphusError, match="401") as e:
        run_generate(srv, notes(20), tmp_path / "c", concurrency=2)
    assert time.perf_counter() - t < 5 and "wrong-key-123" not in str(e.value)
    assert srv.state.total <= 2


def test_unknown_model_fails_fast(serve, notes, tmp_path, run_generate):
    srv = serve(models=["real-model"])
    with pytest.raises(SyphusError, match="model 'nope'"):
        run_generate(srv, notes(20), tmp_path / "c", model="nope", concurrency=2)
    assert srv.state.total <= 2


def test_keys_never_reach_the_corpus(serve, notes, tmp_path, monkeypatch, run_generate):
    srv = serve(api_key="sk-secret-987")
    monkeypatch.setenv("SYPHUS_API_KEY", "sk-secret-987")
    s = run_generate(srv, notes(3), tmp_path / "c")
    assert s["done"] == 3
    for f in (tmp_path / "c").rglob("*"):
        if f.is_file():
            assert b"sk-secret-987" not in f.read_bytes(), f


def test_slow_request_does_not_hold_up_the_others(serve, tmp_path, run_generate):
    srv = serve(latency="const:0.02", hang_s=1.5)
    path = tmp_path / "n.jsonl"
    lines = ['{"id": "slow", "text": "FAULT:hang please"}'] + [
        f'{{"id": "n{i}", "text": "note {i}"}}' for i in range(40)
    ]
    path.write_text("\n".join(lines) + "\n")
    s = run_generate(srv, path, tmp_path / "c", concurrency=4, timeout=10)
    assert s["done"] == 41
    # 40 fast requests on 3 free workers take ~0.3 s; a chunked runner would wait 1.5 s per chunk
    order = rows(
        tmp_path / "c",
        "SELECT source_id FROM requests ORDER BY started_at + to_microseconds(CAST(latency_s * 1e6 AS BIGINT))",
    )
    assert order[-1][0] == "slow"
    assert s["wall_s"] < 1.5 + 1.0


def test_rpm_limit(serve, notes, tmp_path, run_generate):
    srv = serve()
    t = time.perf_counter()
    s = run_generate(srv, notes(15), tmp_path / "c", rpm=300, concurrency=8)  # 5/s, burst 5
    assert s["done"] == 15 and time.perf_counter() - t >= 1.8


def test_max_cost_stops_cleanly(serve, notes, tmp_path, run_generate):
    srv = serve()
    # gpt-4o is in litellm's table: ~$0.001 per request at max_tokens=100
    s = run_generate(srv, notes(30), tmp_path / "c", model="gpt-4o", max_tokens=100, max_cost=0.005)
    assert s["status"] == "budget" and 0 < s["done"] < 30 and s["cost_usd"] <= 0.005
    again = run_generate(srv, notes(30), tmp_path / "c", model="gpt-4o", max_tokens=100)
    assert again["already_done"] == s["done"] and again["done"] == 30 - s["done"]


def test_dry_run_sends_nothing(serve, notes, tmp_path, run_generate):
    srv = serve()
    path = notes(10)
    est = run_generate(srv, path, tmp_path / "c", model="gpt-4o", max_tokens=100, dry_run=True)
    assert srv.state.total == 0 and est["to_send"] == 10 and est["est_cost_usd"] > 0
    run_generate(srv, path, tmp_path / "c", model="gpt-4o", max_tokens=100, limit=4)
    est = run_generate(srv, path, tmp_path / "c", model="gpt-4o", max_tokens=100, dry_run=True)
    assert (est["already_done"], est["to_send"]) == (4, 6) and srv.state.total == 4
    assert est["completion_tokens_basis"] == "mean of earlier replies"


class StrictEcho(EchoTask):
    def parse(self, text, ann):
        raise ResponseParseError("strict parser rejects everything")


def test_reparse_uses_stored_replies_only(serve, notes, tmp_path, run_generate):
    srv = serve()
    path = notes(4)
    s = run_generate(srv, path, tmp_path / "c", task=StrictEcho())
    assert (s["pairs"], s["quarantined"]) == (0, 4)
    sent = srv.state.total
    r = reparse(EchoTask(), [path], tmp_path / "c")
    assert (r["replies"], r["pairs"], r["quarantined"]) == (4, 8, 0)
    assert srv.state.total == sent
    assert rows(tmp_path / "c", "SELECT count(*) FROM quarantine") == [(0,)]
    assert rows(tmp_path / "c", "SELECT count(*) FROM instructions") == [(8,)]
