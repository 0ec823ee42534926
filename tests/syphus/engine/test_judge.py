"""`syphus score`, `curate --min-score`, the report and export, through the CLI against the local server.

The server answers a json_schema ``response_format`` with JSON of that schema, its integer from
``SCORE:<n>`` in the message: each pair's answer carries the score the judge will give it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from curation.store import DB_NAME, Corpus, InstructionRow
from syphus.engine.judge import DEFAULT_RUBRIC, load_rubric
from tests.curation.store.helpers import run_syphus


def make_corpus(path: Path, n: int, score_of=lambda i: 1 + i % 10) -> dict[str, int]:
    """``n`` pairs of two tasks, pair i's answer asking for ``score_of(i)``; returns id -> score."""
    want = {}
    rows = []
    for i in range(n):
        iid = f"{'LA' if i % 2 else 'SD'}_INS_{i:05d}"
        want[iid] = score_of(i)
        rows.append(InstructionRow(id=iid, task="LA" if i % 2 else "SD", instruction=f"What is in picture {i}?",
                                   answer=f"A cat number {i}. SCORE:{score_of(i)}"))  # fmt: skip
    with Corpus(path) as c:
        run = c.start_run("test", {})
        c.add_instructions(rows, run)
        c.finish_run(run)
    return want


def stored_scores(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path / DB_NAME), read_only=True)
    try:
        return con.execute(
            "SELECT instruction_id, judge_model, rubric_sha256, score, scale_max, reason FROM scores ORDER BY 1, 3"
        ).fetchall()
    finally:
        con.close()


def db_digest(path: Path) -> str:
    return hashlib.sha256((path / DB_NAME).read_bytes()).hexdigest()


def score_cli(srv, corpus: Path, *extra) -> tuple[int, str, str]:
    return run_syphus("score", "--corpus", corpus, "--judge", "judge-m", "--api-base", srv.base_url,
                      "--no-progress", *extra)  # fmt: skip


def test_score_stores_each_verdict_with_judge_and_rubric_hash(serve, tmp_path):
    srv = serve()
    corpus = tmp_path / "c"
    want = make_corpus(corpus, 30)
    rc, out, err = score_cli(srv, corpus)
    assert rc == 0, err
    rows = stored_scores(corpus)
    sha = load_rubric(DEFAULT_RUBRIC).sha256()
    assert {r[0]: r[3] for r in rows} == {k: float(v) for k, v in want.items()}  # the judge's JSON, parsed
    assert {(r[1], r[2], r[4]) for r in rows} == {("judge-m", sha, 10.0)}
    assert all(r[5].strip() for r in rows)  # a reason with each
    assert srv.state.total == 30


def test_same_rubric_never_asks_again_and_a_new_rubric_scores_again(serve, tmp_path):
    srv = serve()
    corpus = tmp_path / "c"
    make_corpus(corpus, 20)
    assert score_cli(srv, corpus)[0] == 0
    assert srv.state.total == 20
    rc, out, err = score_cli(srv, corpus)
    assert rc == 0, err
    assert srv.state.total == 20  # nothing asked: every pair has this judge's verdict under this rubric
    assert len(stored_scores(corpus)) == 20

    rubric = tmp_path / "strict.yaml"
    rubric.write_text(
        DEFAULT_RUBRIC.read_text(encoding="utf-8").replace(
            "You are a strict reviewer", "You are a harsh reviewer"
        ),
        encoding="utf-8",
    )
    rc, out, err = score_cli(srv, corpus, "--rubric", rubric)
    assert rc == 0, err
    assert srv.state.total == 40  # every pair asked once more, under the new rubric
    assert all(n == 1 for n in srv.state.requests.values())  # and no request twice
    rows = stored_scores(corpus)
    assert len(rows) == 40
    assert {r[2] for r in rows} == {load_rubric(DEFAULT_RUBRIC).sha256(), load_rubric(rubric).sha256()}
    # the scores table lost: the replies are in the request log, so a rerun rebuilds it for free
    con = duckdb.connect(str(corpus / DB_NAME))
    con.execute("DELETE FROM scores")
    con.close()
    assert score_cli(srv, corpus, "--rubric", rubric)[0] == 0
    assert srv.state.total == 40 and len(stored_scores(corpus)) == 20


def test_dry_run_counts_and_sends_nothing(serve, tmp_path):
    srv = serve()
    corpus = tmp_path / "c"
    make_corpus(corpus, 12)
    before = db_digest(corpus)
    rc, out, err = score_cli(srv, corpus, "--dry-run", "--limit", "5")
    assert rc == 0, err
    assert "to send" in out and " 5" in out
    assert srv.state.total == 0 and db_digest(corpus) == before


@pytest.mark.slow
def test_kill9_mid_score_then_resume_loses_no_reply_and_pays_none_twice(serve, tmp_path):
    srv = serve(latency="const:0.02")
    corpus = tmp_path / "c"
    want = make_corpus(corpus, 600)
    cmd = [sys.executable, "-m", "syphus.cli", "score", "--corpus", str(corpus), "--judge", "judge-m",
           "--api-base", srv.base_url, "--concurrency", "8", "--no-progress"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while srv.state.total < 150 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    received = received_before_kill(corpus, srv)
    assert 0 < len(received) < 600  # killed mid-run
    asked = {k: srv.state.requests[k] for k in received.values()}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert all(srv.state.requests[k] == n for k, n in asked.items())  # no received reply asked again
    assert srv.duplicates() <= 8  # only what was in flight at the kill went out again
    assert {r[0]: r[3] for r in stored_scores(corpus)} == {k: float(v) for k, v in want.items()}  # none lost


def received_before_kill(corpus: Path, srv) -> dict[str, str]:
    """Pair id -> the server's key of its request, for every reply the killed run had journaled."""
    from curation.store import Corpus
    from syphus.engine.judge import judge_options, pair_text, system_message
    from syphus.engine.pipeline import GenerateOptions
    from syphus.engine.requestlog import RequestLog

    rubric = load_rubric(DEFAULT_RUBRIC)
    opts = judge_options(GenerateOptions(model="judge-m", api_base=srv.base_url, temperature=0.0, max_tokens=256),
                         rubric, True)  # fmt: skip
    with Corpus(corpus) as c:  # opening the log replays the journal the killed run left
        RequestLog(c).close()
        done = [
            r[0] for r in c.con.execute("SELECT source_id FROM requests WHERE status = 'done'").fetchall()
        ]
        pairs = {p.id: p for p in c.pairs(done)}
    out = {}
    for iid in done:
        p = pairs[iid]
        msgs = [{"role": "system", "content": system_message(rubric)},
                {"role": "user", "content": pair_text(p.task, p.lang, p.instruction, p.answer, p.extra)}]  # fmt: skip
        body = {"model": "judge-m", "messages": msgs, **opts.params()}
        out[iid] = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
    assert set(out.values()) <= set(srv.state.requests)  # the keys are computed as the server does
    return out


def test_curate_min_score_flags_undo_report_and_export(serve, tmp_path):
    srv = serve()
    corpus = tmp_path / "c"
    want = make_corpus(corpus, 20)
    assert score_cli(srv, corpus)[0] == 0
    low = sorted(k for k, v in want.items() if v < 4)

    rc, out, err = run_syphus("curate", "--corpus", corpus, "--min-score", "4")
    assert rc == 0, err
    assert f"{len(low)} below 4 flagged low_score" in out
    run_id = out.split("run ", 1)[1].split(";")[0]
    with Corpus(corpus, read_only=True) as c:
        assert sorted(p.id for p in c.pairs()) == sorted(want)
        assert sorted(set(want) - {p.id for p in c.pairs(active_only=True)}) == low

    report = tmp_path / "r.html"
    assert run_syphus("report", "--corpus", corpus, "--out", report)[0] == 0
    page = report.read_text(encoding="utf-8")
    assert 'class="hist" data-task="LA" data-scored="10"' in page
    assert 'class="hist" data-task="SD" data-scored="10"' in page
    assert f'<span class="score">{want["LA_INS_00001"]:g}/10</span>' in page  # beside its pair
    assert "low_score: score 1/10 &lt; 4" in page  # the flag says why

    out_dir = tmp_path / "mimicit"
    assert run_syphus("export", "mimicit", "--corpus", corpus, "--out", out_dir)[0] == 0
    exported = {
        k
        for f in out_dir.glob("*_instructions.json")
        for k in json.loads(f.read_text(encoding="utf-8"))["data"]
    }
    assert exported == set(want) - set(low)
    shards = tmp_path / "shards"
    assert run_syphus("export", "shards", "--corpus", corpus, "--out", shards)[0] == 0
    assert json.loads((shards / "manifest.json").read_text(encoding="utf-8"))["rows"] == len(want) - len(low)

    rc, out, err = run_syphus("curate", "--corpus", corpus, "--unflag-run", run_id)
    assert rc == 0, err
    with Corpus(corpus, read_only=True) as c:
        assert len(c.pairs(active_only=True)) == 20


def test_curate_min_score_picks_the_judge(serve, tmp_path):
    srv = serve()
    corpus = tmp_path / "c"
    make_corpus(corpus, 6)
    assert score_cli(srv, corpus)[0] == 0
    assert run_syphus("score", "--corpus", corpus, "--judge", "other-m", "--api-base", srv.base_url,
                      "--no-progress")[0] == 0  # fmt: skip
    rc, out, err = run_syphus("curate", "--corpus", corpus, "--min-score", "3")
    assert rc == 1 and "--judge" in err and "judge-m" in err and "other-m" in err
    rc, out, err = run_syphus("curate", "--corpus", corpus, "--min-score", "3", "--judge", "other-m")
    assert rc == 0, err and "scored by other-m" in out
    rc, out, err = run_syphus("curate", "--corpus", corpus, "--min-score", "3", "--judge", "nobody")
    assert rc == 1 and "'nobody' scored no pair" in err


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "rubric file not found"),
        (b"", "rubric file is empty"),
        (b"name: x\nsystem: \xff\xfe\n", "not UTF-8"),
        (b"name: [x\nsystem: y\n", "malformed YAML"),
        (b"name: x\nsystem: judge\ncriteria: {}\n", "field 'criteria'"),
        (b"name: x\nsystem: judge\ncriteria: {a: b}\nscale_max: 0\n", "scale_max"),
        (b"name: x\nsystem: judge\ncriteria: {a: b}\nscale_max: .nan\n", "field 'scale_max'"),
        (b"- name: x\n", "must be a mapping"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
    ],
)
def test_bad_rubric_is_one_line_naming_the_file_and_changes_nothing(serve, tmp_path, content, says):
    srv = serve()
    corpus = tmp_path / "c"
    make_corpus(corpus, 3)
    rubric = tmp_path / "rubric.yaml"
    if content is not None:
        rubric.write_bytes(content)
    before = db_digest(corpus)
    rc, out, err = score_cli(srv, corpus, "--rubric", rubric)
    assert rc == 1
    line = err.strip()
    assert "\n" not in line and str(rubric) in line and says in line, line
    assert srv.state.total == 0 and db_digest(corpus) == before


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_min_score_not_a_number_is_one_line_and_changes_nothing(serve, tmp_path, value):
    srv = serve()
    corpus = tmp_path / "c"
    make_corpus(corpus, 4)
    assert score_cli(srv, corpus)[0] == 0
    before = db_digest(corpus)
    rc, out, err = run_syphus("curate", "--corpus", corpus, "--min-score", value)
    assert rc == 1
    assert "\n" not in err.strip() and "--min-score" in err
    assert db_digest(corpus) == before


def test_curate_min_score_without_scores_says_to_score_first(tmp_path):
    corpus = tmp_path / "c"
    make_corpus(corpus, 2)
    rc, out, err = run_syphus("curate", "--corpus", corpus, "--min-score", "5")
    assert rc == 1 and "syphus score" in err


def test_a_judge_that_sees_gets_each_pairs_own_images(serve, tmp_path):
    from PIL import Image

    srv = serve()
    folder = tmp_path / "imgs"
    folder.mkdir()
    colours = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    for name, rgb in colours.items():
        Image.new("RGB", (64, 48), rgb).save(folder / f"{name}.png")
    corpus = tmp_path / "c"
    assert run_syphus("import", "images", folder, "--corpus", corpus)[0] == 0
    with Corpus(corpus) as c:
        run = c.start_run("test", {})
        c.add_instructions(
            [InstructionRow(id=f"LA_INS_{n}", task="LA", instruction="What colour?", answer=f"{n}. SCORE:7",
                            image_ids=[n]) for n in ("red", "blue", "gone")],
            run,
        )  # fmt: skip
    rc, out, err = score_cli(srv, corpus)
    assert rc == 0, err
    assert "image not in the corpus" in out  # the pair whose image is missing: skipped, counted, not sent
    reasons = {r[0]: r[5] for r in stored_scores(corpus)}
    assert set(reasons) == {"LA_INS_red", "LA_INS_blue"} and srv.state.total == 2
    assert "IMAGE 1: 64x48 mean=(255,0,0)" in reasons["LA_INS_red"]
    assert "IMAGE 1: 64x48 mean=(0,0,255)" in reasons["LA_INS_blue"]

    rubric = write_rubric(tmp_path, "text only")
    rc, out, err = score_cli(srv, corpus, "--no-images", "--rubric", rubric)
    assert rc == 0, err
    assert srv.state.total == 5  # all three, text only (the missing image does not matter then)
    text_only = [r for r in stored_scores(corpus) if r[2] == load_rubric(rubric).sha256()]
    assert len(text_only) == 3 and not any("IMAGE" in r[5] for r in text_only)


def write_rubric(tmp_path: Path, words: str) -> Path:
    path = tmp_path / f"rubric-{abs(hash(words))}.yaml"
    path.write_text(
        DEFAULT_RUBRIC.read_text(encoding="utf-8").replace(
            "You are a strict reviewer", f"You are a {words} reviewer"
        ),
        encoding="utf-8",
    )
    return path


def test_without_structured_output_the_text_is_read_leniently_and_the_rest_quarantined(serve, tmp_path):
    srv = serve()
    corpus = tmp_path / "c"
    with Corpus(corpus) as c:
        run = c.start_run("test", {})
        c.add_instructions([
            InstructionRow(id="LA_INS_1", task="LA", instruction="score: 8 is it?", answer="Yes."),  # echoed back
            InstructionRow(id="LA_INS_2", task="LA", instruction="What is it?", answer="A cat."),
        ], run)  # fmt: skip
    rc, out, err = score_cli(srv, corpus, "--no-structured")
    assert rc == 0, err
    assert [(r[0], r[3]) for r in stored_scores(corpus)] == [("LA_INS_1", 8.0)]
    assert "unparseable verdicts (quarantined): first LA_INS_2" in err + out
    with Corpus(corpus, read_only=True) as c:
        q = c.con.execute("SELECT stage, record_id, reason, raw FROM quarantine").fetchall()
    assert len(q) == 1 and q[0][:2] == ("score", "LA_INS_2") and "unparseable" in q[0][2] and q[0][3]
    assert score_cli(srv, corpus, "--no-structured")[0] == 0  # the stored reply is read again, not asked
    assert srv.state.total == 2
    with Corpus(corpus, read_only=True) as c:
        assert c.table_size("quarantine") == 1


def test_a_corpus_from_before_the_scores_table_reports_curates_and_gets_scored(serve, tmp_path):
    srv = serve()
    corpus = tmp_path / "c"
    want = make_corpus(corpus, 4)
    con = duckdb.connect(str(corpus / DB_NAME))
    con.execute("DROP TABLE scores")  # as an older syphus wrote it
    con.close()
    before = db_digest(corpus)
    assert (
        run_syphus("report", "--corpus", corpus, "--out", tmp_path / "r.html")[0] == 0
    )  # read-only: as it was
    assert db_digest(corpus) == before
    rc, out, err = run_syphus("curate", "--corpus", corpus, "--min-score", "3")
    assert rc == 1 and "run 'syphus score" in err
    assert score_cli(srv, corpus)[0] == 0  # opened for writing: the table is created, the rest kept
    assert len(stored_scores(corpus)) == len(want)


def test_max_cost_stops_the_judge_and_a_rerun_finishes_without_asking_twice(serve, tmp_path):
    srv = serve()
    corpus = tmp_path / "c"
    want = make_corpus(corpus, 40)
    args = ["score", "--corpus", corpus, "--judge", "gpt-4o-mini", "--api-base", srv.base_url, "--no-progress",
            "--concurrency", "1"]  # fmt: skip
    rc, out, err = run_syphus(*args, "--max-cost", "0.0002")  # a priced model: a few verdicts' worth
    assert rc == 3, err
    first = len(stored_scores(corpus))
    assert 0 < first < 40 and srv.state.total < 40
    rc, out, err = run_syphus(*args)
    assert rc == 0, err
    assert len(stored_scores(corpus)) == len(want)
    assert all(n == 1 for n in srv.state.requests.values())  # none asked twice


def test_score_spreads_over_several_endpoints(serve, tmp_path):
    a, b = serve(latency="const:0.01"), serve(latency="const:0.01")
    corpus = tmp_path / "c"
    want = make_corpus(corpus, 40)
    rc, out, err = run_syphus("score", "--corpus", corpus, "--judge", "judge-m", "--api-base", a.base_url,
                              "--api-base", b.base_url, "--no-progress", "--concurrency", "8")  # fmt: skip
    assert rc == 0, err
    assert a.state.total > 0 and b.state.total > 0 and a.state.total + b.state.total == 40
    assert {r[0]: r[3] for r in stored_scores(corpus)} == {k: float(v) for k, v in want.items()}
