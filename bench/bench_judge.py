"""Judge throughput (issue 12): ``syphus score`` through the whole pipeline on the zero-latency server.

1. Pairs scored per second by the whole score pipeline (read pairs, build prompts, request keys,
   ask: log, scheduler, HTTP with the verdict's json_schema ``response_format``; parse and
   validate each verdict with pydantic; store it in the scores table), target >= 2,000 pairs/s
   on 2 cores, against the baseline measured in the same run: generate's requests/s on the
   same server (bench_generate item 2). The client's CPU per pair is reported too: on a machine
   shared with other work the wall-clock rate follows the load, the CPU per pair does not.
2. A rerun with the same rubric: requests sent (must be 0) and its wall time.
3. The scores table lost, rebuilt from the request log: pairs/s with no request sent.

Run: ``python bench/bench_judge.py [--n 20000]``; figures go to ``bench/results/judge.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.store import Corpus, InstructionRow  # noqa: E402
from syphus.engine.judge import ScoreOptions, score  # noqa: E402
from syphus.engine.pipeline import GenerateOptions, generate  # noqa: E402
from syphus.testing.echo_task import EchoTask, write_notes  # noqa: E402

CONCURRENCY = 64


class Server:
    """The test server in its own process (its own core), so the client is measured alone."""

    def __init__(self, tmp: Path):
        port_file = tmp.resolve() / f"port-{os.getpid()}-{random.random()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syphus.testing.openai_server", "--latency", "const:0", "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )  # fmt: skip
        for _ in range(1200):
            if port_file.exists():
                break
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{port_file.read_text()}/v1"

    def total(self) -> int:
        return httpx.get(self.base.rsplit("/v1", 1)[0] + "/_stats", timeout=60).json()["total"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def make_corpus(path: Path, n: int) -> None:
    rows = [
        InstructionRow(id=f"LA_INS_{i:07d}", task="LA", instruction=f"What is the person in picture {i} doing?",
                       answer=f"The person is riding bicycle number {i} along a river. SCORE:{1 + i % 10}")
        for i in range(n)
    ]  # fmt: skip
    with Corpus(path) as c:
        run = c.start_run("bench", {})
        c.add_instructions(rows, run)
        c.finish_run(run)


def judge_opts(base: str) -> GenerateOptions:
    return GenerateOptions(model="judge-m", api_base=base, concurrency=CONCURRENCY, temperature=0.0,
                           max_tokens=256, timeout=60)  # fmt: skip


def bench(n: int, tmp: Path) -> dict:
    srv = Server(tmp)
    try:
        notes = write_notes(tmp / "notes.jsonl", n, prefix="g")
        gopts = GenerateOptions(
            model="m", api_base=srv.base, concurrency=CONCURRENCY, max_tokens=64, timeout=60
        )
        c0 = time.process_time()
        gen = generate(EchoTask(), [notes], tmp / "gen", gopts)
        gen_cpu = time.process_time() - c0

        corpus = tmp / "judge"
        make_corpus(corpus, n)
        c0 = time.process_time()
        first = score(corpus, judge_opts(srv.base), ScoreOptions())
        judge_cpu = time.process_time() - c0
        sent_before = srv.total()
        t = time.perf_counter()
        again = score(corpus, judge_opts(srv.base), ScoreOptions())
        again_wall = time.perf_counter() - t
        resent = srv.total() - sent_before
        with Corpus(corpus) as c:
            c.con.execute("DELETE FROM scores")
        rebuilt = score(corpus, judge_opts(srv.base), ScoreOptions())
        resent += srv.total() - sent_before
    finally:
        srv.close()
    return {
        "machine": {"cpus": os.cpu_count()},
        "pairs": n,
        "in_flight": CONCURRENCY,
        "latency": "0",
        "1_score_pipeline": {
            "pairs_per_s": first["pairs_per_s"],
            "scored": first["scored"],
            "unparseable": first["unparseable"],
            "errors": first.get("errors", 0),
            "structured": first["structured"],
            "wall_s": first["wall_s"],
            "baseline_generate_req_per_s": gen["req_per_s"],
            "ratio_to_generate": first["pairs_per_s"] / gen["req_per_s"],
            # the client's own CPU (the server runs in another process): what bounds it on a free core
            "client_cpu_us_per_pair": 1e6 * judge_cpu / n,
            "client_cpu_us_per_generate_request": 1e6 * gen_cpu / n,
            "cpu_bound_pairs_per_s": n / judge_cpu,
            "load_average_1min": os.getloadavg()[0],
            "target_pairs_per_s": 2000,
            "meets_target": first["pairs_per_s"] >= 2000,
        },
        "2_rerun_same_rubric": {
            "requests_sent": resent,
            "already_scored": again["already_scored"],
            "wall_s": again_wall,
        },  # fmt: skip
        "3_rebuilt_from_request_log": {
            "requests_sent": resent,
            "scored": rebuilt["scored"],
            "pairs_per_s": rebuilt["pairs_per_s"],
        },  # fmt: skip
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="pairs to score")
    a = ap.parse_args()
    out_path = ROOT / "bench" / "results" / "judge.json"
    with tempfile.TemporaryDirectory() as d:
        results = bench(a.n, Path(d))
    print(json.dumps(results, indent=1), flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
