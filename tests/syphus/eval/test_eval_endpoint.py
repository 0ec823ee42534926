"""An endpoint model under test and an endpoint judge, against the local test server: each image
reaches its own request, a rerun asks nothing again, and a judge-scored evaluation killed with
SIGKILL and rerun repeats no judge request whose reply was received."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from syphus.testing.openai_server import OpenAIServer, ServerConfig, body_key
from tests.paths import REPO
from tests.trainer.train.helpers import run_cli

SHAPES = "tests.syphus.eval.shapes_bench:SHAPES"
JUDGED = "tests.syphus.eval.shapes_bench:JUDGED"


@pytest.fixture
def server():
    srv = OpenAIServer(ServerConfig(latency="const:0")).start()
    yield srv
    srv.stop()


def test_endpoint_model_gets_each_question_with_its_images(server, bench_data, tmp_path, capsys):
    argv = ["eval", "--no-progress", "--model", "vision-model", "--api-base", server.base_url, "--bench", SHAPES,
            "--data", str(bench_data), "--out", str(tmp_path / "out")]  # fmt: skip
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    rows = {
        r["sample_id"]: r
        for r in map(
            json.loads, (tmp_path / "out" / "vision-model" / "shapes.samples.jsonl").read_text().splitlines()
        )
    }
    sent = server.state.total
    assert len(rows) == 12 and 0 < sent <= 12  # identical questions with identical images are asked once
    assert "IMAGE 1: 32x32" in rows["q1"]["prediction"] and "IMAGE 2: 32x32" in rows["q1"]["prediction"]
    assert "IMAGE 1: 32x32" in rows["q0"]["prediction"] and "IMAGE 2" not in rows["q0"]["prediction"]
    assert "IMAGE" not in rows["q5"]["prediction"]  # the text-only question went without images
    # q0 shows a red shape, q1 a green one first: the mean colours the server saw differ.
    mean = lambda r: r["prediction"].split("IMAGE 1: 32x32 mean=")[1].split(")")[0]  # noqa: E731
    assert mean(rows["q0"]) != mean(rows["q1"])

    code, _, err = run_cli(argv, capsys)  # everything answered: the rerun sends nothing
    assert code == 0, err
    assert server.state.total == sent


def test_endpoint_model_that_cannot_see_is_refused_before_any_request(bench_data, tmp_path, capsys):
    code, _, err = run_cli(["eval", "--model", "local/smollm2-135m", "--bench", SHAPES, "--data", str(bench_data),
                            "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 1 and "cannot take images" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_kill9_of_a_judged_eval_then_rerun_repeats_no_judge_request(otter_dir, bench_data, tmp_path):
    srv = OpenAIServer(ServerConfig(latency="const:0.4")).start()
    try:
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "syphus.cli", "eval", "--no-progress", "--model", str(otter_dir), "--bench",
               JUDGED, "--data", str(bench_data), "--out", str(out), "--judge", "judge-model", "--judge-api-base",
               srv.base_url, "--concurrency", "1"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while sum(srv.state.completed.values()) < 2 and p.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        os.kill(p.pid, signal.SIGKILL)
        p.wait()

        # The judge prompts are a function of the journaled answers: their server-side keys.
        journal = (out / f"{otter_dir.parent.name}_model" / ".shapes_judged.predictions.jsonl").read_text()
        predictions = {r["id"]: r["prediction"] for r in map(json.loads, journal.splitlines()[1:])}
        targets = {f"q{i}": "yes" if i % 2 else "no" for i in range(6)}
        server_key = {
            sid: body_key({"model": "judge-model", "messages": [{"role": "user", "content":
                f"Sample {sid}. Target: {targets[sid]}. Prediction: {pred}. Grade 0 or 1."}],
                "temperature": 0.0, "max_tokens": 1024})
            for sid, pred in predictions.items()
        }  # fmt: skip
        received = _received_by_client(out / ".requests")
        assert 1 <= len(received) < 6, received
        before = {sid: srv.state.requests[server_key[sid]] for sid in received}
        assert all(before.values())  # the keys line up with what the server saw

        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert {sid: srv.state.requests[server_key[sid]] for sid in received} == before
        assert all(srv.state.completed[k] >= 1 for k in server_key.values())  # every sample judged
        result = json.loads((out / f"{otter_dir.parent.name}_model" / "shapes_judged.json").read_text())
        assert len(result["verdicts"]) == 6
        assert any(n.startswith("judge: judge-model; 6 requests; prompts sha256 ") for n in result["notes"])
    finally:
        srv.stop()


def _received_by_client(store) -> set[str]:
    """Sample ids whose judge reply the killed run had journaled (opening the log replays it)."""
    from curation.store import Corpus
    from syphus.engine.requestlog import RequestLog

    with Corpus(store) as c:
        RequestLog(c).close()
        rows = c.con.execute(
            "SELECT source_id FROM requests WHERE status='done' AND task='eval:judge'"
        ).fetchall()
    return {r[0] for r in rows}


def test_max_cost_stops_with_status_3_and_a_rerun_pays_nothing_twice(server, bench_data, tmp_path, capsys):
    argv = ["eval", "--no-progress", "--model", "gpt-4o", "--api-base", server.base_url, "--bench", SHAPES,
            "--data", str(bench_data), "--out", str(tmp_path / "out"), "--concurrency", "1"]  # fmt: skip
    # litellm's gpt-4o price: about 0.0008 a question with its image tokens, so a few are asked
    code, _, err = run_cli([*argv, "--max-cost", "0.003"], capsys)
    assert code == 3 and "--max-cost reached" in err
    first = server.state.total
    assert 0 < first < 12 and not (tmp_path / "out" / "gpt-4o" / "shapes.json").exists()
    code, _, err = run_cli([*argv, "--max-cost", "10"], capsys)
    assert code == 0, err
    assert server.duplicates() == 0 and (tmp_path / "out" / "gpt-4o" / "shapes.json").is_file()
