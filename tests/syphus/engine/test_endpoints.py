"""``--api-base`` given several times: requests spread over the servers, a failing one is drained."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from syphus.engine.ask import Prompt, ask
from syphus.engine.pipeline import GenerateOptions
from syphus.testing.openai_server import ServerProcess
from trainer.net import free_port

ECHO = "syphus.testing.echo_task:EchoTask"


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syphus.cli", *args], capture_output=True, text=True,
                          timeout=120, **kw)  # fmt: skip


def generate_args(notes_path, corpus, bases, *extra) -> list[str]:
    args = ["generate", "--task", ECHO, "--annotations", str(notes_path), "--corpus", str(corpus), "--model", "m",
            "--max-tokens", "64", "--no-progress", *extra]  # fmt: skip
    for b in bases:
        args += ["--api-base", b]
    return args


def done_requests(corpus) -> tuple[int, int]:
    con = duckdb.connect(str(corpus / "corpus.duckdb"), read_only=True)
    try:
        return (
            con.execute("SELECT count(*) FROM requests WHERE status = 'done'").fetchone()[0],
            con.execute("SELECT count(*) FROM instructions").fetchone()[0],
        )
    finally:
        con.close()


@pytest.fixture
def process_server(tmp_path):
    """A test server in its own process, so a test can kill -9 it."""
    servers = []

    def start(*args: str) -> ServerProcess:
        servers.append(ServerProcess(*args, port_file=tmp_path / f"port-{len(servers)}"))
        return servers[-1]

    yield start
    for s in servers:
        s.proc.kill()
        s.close()


def test_requests_spread_over_servers_and_resume_on_another(serve, notes, tmp_path):
    a, b = serve(latency="const:0.01"), serve(latency="const:0.01")
    path, corpus = notes(60), tmp_path / "c"
    r = cli(*generate_args(path, corpus, [a.base_url, b.base_url], "--concurrency", "8"))
    assert r.returncode == 0, r.stderr
    assert done_requests(corpus) == (60, 120)
    assert a.state.total >= 15 and b.state.total >= 15 and a.state.total + b.state.total == 60
    assert not set(a.state.requests) & set(b.state.requests)  # each question went to one server
    assert "replies per endpoint" in r.stdout
    # the log does not depend on which server answered: resuming on the other one sends nothing
    r = cli(*generate_args(path, corpus, [b.base_url]))
    assert r.returncode == 0, r.stderr
    assert a.state.total + b.state.total == 60 and done_requests(corpus) == (60, 120)


def test_the_server_with_fewer_in_flight_gets_more(serve, notes, tmp_path):
    slow, fast = serve(latency="const:0.25"), serve(latency="const:0.01")
    r = cli(*generate_args(notes(60), tmp_path / "c", [slow.base_url, fast.base_url], "--concurrency", "4"))
    assert r.returncode == 0, r.stderr
    assert fast.state.total > 3 * slow.state.total and slow.state.total >= 1


def test_a_server_killed_mid_run_is_drained_and_the_run_goes_on(serve, process_server, notes, tmp_path):
    doomed = process_server("--latency", "const:0.05")
    doomed_base = doomed.base_url
    ok = serve(latency="const:0.05")
    corpus = tmp_path / "c"
    run = subprocess.Popen([sys.executable, "-m", "syphus.cli",
                            *generate_args(notes(200), corpus, [doomed_base, ok.base_url], "--concurrency", "8")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while doomed.stats()["total"] < 20:  # kill -9 it once it has served part of the run
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    text = " ".join((out + err).split())
    assert (
        f"warning: {doomed_base}: drained after" in text
        and f"going on with 1 of 2 endpoints ({ok.base_url})" in text
    )
    assert done_requests(corpus) == (200, 400)
    assert ok.state.total < 200  # the killed server did answer part of the run


def test_a_server_answering_500_is_drained(serve, notes, tmp_path):
    ok, broken = serve(), serve(fault_rate={"500": 1.0})
    corpus = tmp_path / "c"
    r = cli(*generate_args(notes(40), corpus, [broken.base_url, ok.base_url], "--concurrency", "4"))
    assert r.returncode == 0, r.stderr
    text = " ".join((r.stdout + r.stderr).split())
    assert f"{broken.base_url}: drained after 5 failures in a row (last: 500 from" in text
    assert "drained endpoints" in text
    assert broken.state.total <= 5 + 4  # the streak, plus what was in flight when it ended
    assert done_requests(corpus) == (40, 80) and ok.duplicates() == 0


def test_all_servers_down_stops_the_run_in_one_line(notes, tmp_path):
    bases = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    r = cli(*generate_args(notes(10), tmp_path / "c", bases))
    assert r.returncode == 1
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: all 2 endpoints failed repeatedly")
    assert all(f"{b} (connection refused by {b}/chat/completions" in lines[0] for b in bases)


def test_batch_takes_one_endpoint(notes, tmp_path):
    r = cli(
        *generate_args(
            notes(2), tmp_path / "c", ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], "--batch"
        )
    )
    assert r.returncode == 1 and "--batch: a batch job goes to one endpoint" in r.stderr
    assert not (tmp_path / "c").exists()


def test_ask_spreads_over_endpoints_with_the_same_keys(serve, tmp_path):
    a, b = serve(latency="const:0.01"), serve(latency="const:0.01")
    ps = [Prompt("judge:v1", [{"role": "user", "content": f"pair {i}"}]) for i in range(30)]
    two = GenerateOptions(model="m", api_base=a.base_url, extra_api_bases=[b.base_url], concurrency=6)
    res = ask(ps, store=tmp_path / "cache", opts=two)
    assert res.status == "done" and a.state.total and b.state.total
    one = GenerateOptions(model="m", api_base=b.base_url, concurrency=6)
    again = ask(ps, store=tmp_path / "cache", opts=one)
    assert all(r.cached for r in again.replies) and [r.key for r in again.replies] == [
        r.key for r in res.replies
    ]


def test_test_server_cap_makes_requests_beyond_it_wait(serve, tmp_path):
    ps = [Prompt("cap", [{"role": "user", "content": f"q {i}"}]) for i in range(6)]
    walls = {}
    for cap in ("warm-up", None, 2):
        srv = serve(latency="const:0.3", max_concurrent=cap if cap != "warm-up" else None)
        opts = GenerateOptions(model="m", api_base=srv.base_url, concurrency=6)
        walls[cap] = ask(ps, store=tmp_path / f"cache-{cap}", opts=opts).summary["wall_s"]
    assert walls[2] - walls[None] >= 0.4  # 3 rounds of 2 instead of 6 at once: 0.6 s more
