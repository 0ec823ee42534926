"""`syphus generate` accounts for every annotation record it reads, through the CLI: skipped
(with the reason), merged into another annotation, sharing an identical prompt (and still given
pairs), already done, requested. Also: missing image ids said before sending, exit status 4 for
failed requests, and no API key in any message or stored error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

# Spot-the-Diff records as the public val.json has them: several annotators per pair (repeated
# img_id), some records with only blank sentences, a few exact repeats.
SD_RECORDS = [
    {"img_id": "1", "sentences": ["the white car is gone"]},
    {"img_id": "2", "sentences": [""]},  # nothing to generate from: skipped
    {"img_id": "1", "sentences": ["a man walks in", ""]},  # second annotator of pair 1: merged
    {"img_id": "4", "sentences": ["the door is open"]},
    {"img_id": "5", "sentences": ["the door is open"]},  # same prompt as pair 4: asked once, pairs for both
    {"img_id": "6", "sentences": ["the bike is gone"]},
    {"img_id": "6", "sentences": ["the bike is gone"]},  # exact repeat: merged
    {"img_id": "7", "sentences": [" "]},  # blank, but pair 7 has a later annotator: merged
    {"img_id": "7", "sentences": ["the truck moved"]},
]


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "syphus.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)  # fmt: skip


def _sd_file(tmp_path: Path, records=SD_RECORDS) -> Path:
    p = tmp_path / "val.json"
    p.write_text(json.dumps(records, indent=1))
    return p


def _gen(srv, ann: Path, corpus: Path, *extra: str, task: str = "SD", env=None):
    return _cli("generate", "--task", task, "--annotations", str(ann), "--corpus", str(corpus), "--no-progress",
                "--api-base", srv.base_url, "--model", "test-model", "--max-tokens", "64", *extra, env=env)  # fmt: skip


def _last_summary(corpus: Path) -> dict:
    con = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    try:
        row = con.execute(
            "SELECT summary FROM runs WHERE command = 'generate' ORDER BY started_at DESC LIMIT 1"
        )
        return json.loads(row.fetchone()[0])
    finally:
        con.close()


def _query(corpus: Path, sql: str):
    con = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_sd_summary_accounts_for_every_record(serve, tmp_path):
    srv = serve()
    ann, corpus = _sd_file(tmp_path), tmp_path / "c"
    r = _gen(srv, ann, corpus)
    assert r.returncode == 0, r.stderr
    s = _last_summary(corpus)
    assert (s["records_read"], s["skipped"], s["merged_records"]) == (9, 1, 3)
    assert (s["annotations"], s["requests"], s["identical_prompt"], s["already_done"]) == (5, 4, 1, 0)
    assert s["records_read"] == s["skipped"] + s["merged_records"] + s["annotations"]
    assert srv.state.total == 4  # pairs 4 and 5 asked once
    # the reasons, with the first record of each, are on screen
    assert "skipped 1: no non-empty difference sentence (first: " in r.stderr and "record 1" in r.stderr
    assert "merged 1: repeated img_id: sentences joined into one annotation" in r.stderr
    assert "merged 1: exact duplicate record" in r.stderr
    # every pair, including pair 5 that shared pair 4's prompt, has its pairs and its own images
    by_source = dict(_query(corpus, "SELECT source_id, count(*) FROM instructions GROUP BY source_id"))
    assert by_source == {"1": 2, "4": 2, "5": 2, "6": 2, "7": 2}
    imgs = _query(corpus, "SELECT DISTINCT i.source_id, ii.pos, ii.image_id FROM instructions i "
                          "JOIN instruction_images ii ON ii.ins_id = i.id WHERE i.source_id IN ('4', '5') ORDER BY 1, 2")  # fmt: skip
    assert imgs == [("4", 0, "4"), ("4", 1, "4_2"), ("5", 0, "5"), ("5", 1, "5_2")]
    # both annotators' sentences reached the prompt of pair 1
    r = _cli("preview", "--task", "SD", "--annotations", str(ann), "-n", "1", "--api-base", srv.base_url,
             "--model", "test-model", env={"COLUMNS": "200"})  # fmt: skip
    assert r.returncode == 0 and "- The white car is gone." in r.stdout and "- A man walks in." in r.stdout
    assert "annotation 1" in r.stdout

    # a rerun sends nothing and still accounts for every record
    sent = srv.state.total
    r = _gen(srv, ann, corpus)
    s = _last_summary(corpus)
    assert r.returncode == 0 and srv.state.total == sent
    assert (s["records_read"], s["annotations"], s["already_done"], s["sent"]) == (9, 5, 4, 0)
    assert _query(corpus, "SELECT count(*) FROM instructions")[0][0] == 10

    # a pair added later (and read first) whose prompt was answered already gets that reply's pairs
    _sd_file(tmp_path, [{"img_id": "8", "sentences": ["the door is open"]}, *SD_RECORDS])
    r = _gen(srv, ann, corpus)
    s = _last_summary(corpus)
    assert r.returncode == 0 and srv.state.total == sent, r.stderr
    assert (s["annotations"], s["identical_prompt"], s["stored_from_earlier_replies"]) == (6, 2, 1)
    by_source = dict(_query(corpus, "SELECT source_id, count(*) FROM instructions GROUP BY source_id"))
    assert by_source == {"1": 2, "4": 2, "5": 2, "6": 2, "7": 2, "8": 2}

    # reparse gives the shared prompt's pairs to every annotation again
    r = _cli("reparse", "--task", "SD", "--annotations", str(ann), "--corpus", str(corpus))
    assert r.returncode == 0, r.stderr
    by_source = dict(_query(corpus, "SELECT source_id, count(*) FROM instructions GROUP BY source_id"))
    assert by_source == {"1": 2, "4": 2, "5": 2, "6": 2, "7": 2, "8": 2}


def test_dry_run_says_which_image_ids_the_corpus_lacks(serve, tmp_path):
    from PIL import Image

    srv = serve()
    ann, corpus = _sd_file(tmp_path), tmp_path / "c"
    r = _gen(srv, ann, corpus, "--dry-run")
    assert r.returncode == 0 and srv.state.total == 0
    assert "warning: 10 of 10 image ids these annotations reference are not in" in r.stderr
    assert "(e.g. '1'; the corpus has no images)" in r.stderr
    assert "--task-option image_id_pattern=PATTERN (now '{stem}'; fields: img_id, n, stem)" in r.stderr
    assert "records read" in r.stdout and "identical prompt" in r.stdout

    # images imported under their file names (the default of both commands) are found
    frames = tmp_path / "resized_images"
    frames.mkdir()
    for stem in ["1", "1_2", "4", "4_2", "5", "5_2", "6", "6_2"]:
        Image.new("RGB", (8, 8), (int(stem[0]) * 30, 0, 0)).save(frames / f"{stem}.png")
    assert _cli("import", "images", str(frames), "--corpus", str(corpus)).returncode == 0
    r = _gen(srv, ann, corpus, "--dry-run")
    assert "warning: 2 of 10 image ids" in r.stderr and "(e.g. '7'; the corpus has e.g. '1')" in r.stderr
    # the same warning comes before a real run sends anything
    r = _gen(srv, ann, corpus, "--limit", "5")
    assert r.returncode == 0 and "warning: 2 of 10 image ids" in r.stderr
    assert _last_summary(corpus)["images_missing"] == 2


def test_bad_sd_records_are_one_line_errors(serve, tmp_path):
    srv = serve()
    nan = tmp_path / "nan.json"
    nan.write_text('[{"img_id": NaN, "sentences": ["x"]}]')
    r = _gen(srv, nan, tmp_path / "c")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "nan.json: record 0: field 'img_id'" in r.stderr and "nan" in r.stderr.lower()
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"img_id": "1", "sentences": ["caf\u00e9"]}]'.encode("latin-1"))
    r = _gen(srv, latin, tmp_path / "c")
    assert (
        r.returncode == 1
        and r.stderr.count("\n") == 1
        and "latin.json" in r.stderr
        and "not UTF-8" in r.stderr
    )
    blank = _sd_file(tmp_path, [{"img_id": "2", "sentences": [""]}])
    r = _gen(srv, blank, tmp_path / "c")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no annotations found for task SD (skipped 1: no non-empty difference sentence" in r.stderr
    assert srv.state.total == 0 and not (tmp_path / "c" / "corpus.duckdb").exists()


def test_failed_requests_exit_4_and_a_rerun_retries_only_them(serve, notes, tmp_path):
    srv = serve(first_faults=["500"])
    path = notes(3)
    base = ["generate", "--task", "syphus.testing.echo_task:EchoTask", "--annotations", str(path), "--corpus",
            str(tmp_path / "c"), "--no-progress", "--api-base", srv.base_url, "--model", "test-model"]  # fmt: skip
    r = _cli(*base, "--max-attempts", "1")
    assert r.returncode == 4, r.stderr
    assert "3 request(s) failed after all attempts; rerun the same command" in r.stderr
    assert _last_summary(tmp_path / "c")["status"] == "done_with_errors"
    r = _cli(*base)
    assert r.returncode == 0 and _last_summary(tmp_path / "c")["done"] == 3
    assert "exit status" in _cli("generate", "--help").stdout.lower()


def test_api_key_echoed_by_a_server_is_redacted_everywhere(serve, notes, tmp_path):
    key = "sk-test-SECRET0123456789"
    env = {"SYPHUS_API_KEY": key}
    base = ["generate", "--task", "syphus.testing.echo_task:EchoTask", "--annotations", str(notes(2)),
            "--no-progress", "--model", "test-model", "--max-attempts", "1"]  # fmt: skip
    # a 401 whose body quotes the key back: fatal, one line, no key
    srv = serve(api_key="sk-the-right-one", echo_credentials=True)
    r = _cli(*base, "--corpus", str(tmp_path / "a"), "--api-base", srv.base_url, env=env)
    assert r.returncode == 1 and "authentication failed" in r.stderr
    assert key not in r.stdout + r.stderr and "SECRET" not in r.stderr and "[REDACTED]" in r.stderr
    # a 500 whose body quotes it: stored in the request log and printed as a last error, redacted
    srv = serve(first_faults=["500"], echo_credentials=True)
    r = _cli(*base, "--corpus", str(tmp_path / "b"), "--api-base", srv.base_url, env=env)
    assert r.returncode == 4 and key not in r.stdout + r.stderr and "[REDACTED]" in r.stderr
    errors = [e for (e,) in _query(tmp_path / "b", "SELECT error FROM requests")]
    assert len(errors) == 2 and all("[REDACTED]" in e and "SECRET" not in e for e in errors)
    assert not any(b"SECRET" in p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file())
