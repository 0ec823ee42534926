from __future__ import annotations

from curation.store import Corpus
from syphus.engine.requestlog import JOURNAL_NAME, RequestLog, RequestRecord, request_key


def test_key_is_canonical_json_of_model_messages_params():
    m = [{"role": "user", "content": "hi"}]
    assert request_key("a", m, {"temperature": 0, "max_tokens": 5}) == request_key(
        "a", m, {"max_tokens": 5, "temperature": 0}
    )
    assert request_key("a", m, {"temperature": 0}) != request_key("b", m, {"temperature": 0})
    assert request_key("a", m, {"temperature": 0}) != request_key("a", m, {"temperature": 0.1})


def test_journal_survives_a_crash_before_the_fold(tmp_path):
    corpus = Corpus(tmp_path / "c")
    log = RequestLog(corpus, fold_every=10_000)
    log.record(RequestRecord(key="k1", model="m", status="done", raw="Q: a\nA: b"))
    log.record(RequestRecord(key="k2", model="m", status="error", error="500"))
    # simulate kill -9: nothing folded, journal on disk, connection dropped without close()
    assert (tmp_path / "c" / JOURNAL_NAME).stat().st_size > 0
    corpus.con.close()
    corpus2 = Corpus(tmp_path / "c")
    log2 = RequestLog(corpus2)
    assert log2.replayed == 2
    assert log2.done_keys(["k1", "k2"]) == {"k1"}
    assert [r.raw for r in log2.uningested(["k1"])] == ["Q: a\nA: b"]
    log2.close()
    corpus2.close()


def test_a_finished_reply_is_never_overwritten(tmp_path):
    with Corpus(tmp_path / "c") as corpus:
        log = RequestLog(corpus)
        log.record(RequestRecord(key="k", model="m", status="done", raw="first"))
        log.fold()
        log.record(RequestRecord(key="k", model="m", status="error", error="late failure"))
        log.record(RequestRecord(key="k", model="m", status="done", raw="second"))
        log.close()
        assert corpus.con.execute("SELECT status, raw FROM requests WHERE key='k'").fetchall() == [
            ("done", "first")
        ]
