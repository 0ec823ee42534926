"""kill -9 of a real `syphus generate` at random points, then resume: nothing lost, nothing re-asked."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from curation.store import Corpus
from syphus.engine.requestlog import RequestLog
from syphus.testing.echo_task import write_notes


def done_keys(corpus_dir) -> set[str]:
    with Corpus(corpus_dir) as c:  # opening replays the journal the killed run left
        RequestLog(c).close()
        return {r[0] for r in c.con.execute("SELECT key FROM requests WHERE status='done'").fetchall()}


@pytest.mark.slow
def test_kill9_and_resume_never_duplicates(serve, tmp_path):
    srv = serve(latency="lognormal:0.05:0.5")
    n = 300
    path = write_notes(tmp_path / "n.jsonl", n)
    cmd = [sys.executable, "-m", "syphus.cli", "generate", "--task", "syphus.testing.echo_task:EchoTask",
           "--annotations", str(path), "--corpus", str(tmp_path / "c"), "--model", "m", "--api-base", srv.base_url,
           "--concurrency", "32", "--no-progress", "--max-tokens", "64"]  # fmt: skip
    rng = random.Random(1)
    import hashlib
    import json

    from syphus.engine.pipeline import build_requests, load_annotations
    from syphus.testing.echo_task import EchoTask

    task = EchoTask()
    reqs, _ = build_requests(
        task, load_annotations(task, [path], None).annotations, "m", {"temperature": 0.7, "max_tokens": 64}
    )
    server_key = {
        r.key: hashlib.sha256(json.dumps({"model": "m", "messages": r.messages, "temperature": 0.7, "max_tokens": 64},
                                         sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        for r in reqs
    }  # fmt: skip
    repeated_after_done = 0
    for _ in range(3):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 4.0))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        finished = done_keys(tmp_path / "c")
        before = {k: srv.state.requests[server_key[k]] for k in finished}
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        repeated_after_done += sum(srv.state.requests[server_key[k]] > before[k] for k in finished)
        break_early = len(finished) == n
        if break_early:
            break
    assert repeated_after_done == 0
    con = duckdb.connect(str(tmp_path / "c" / "corpus.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM requests WHERE status='done'").fetchone()[0] == n
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM instructions").fetchone() == (2 * n, 2 * n)
    con.close()
