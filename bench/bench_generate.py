"""Benchmarks of the generate engine against the local OpenAI-compatible server (issue 3).

1. 256 in flight, lognormal latency (mean 0.5 s, sigma 0.5): the whole generate pipeline vs
   ideal (in-flight / mean latency) and vs the original Syphus way (a thread pool of the same
   size that waits for each chunk to finish before starting the next).
2. Zero latency: requests/s of the whole pipeline (log, parsing, accounting) with the lean
   HTTP backend vs the same pipeline with the litellm backend.
3. kill -9 of a real ``syphus generate`` at random points, resume each time: lost replies and
   finished requests asked again (both must be 0).
4. Local SmolLM2-135M backend: tokens/s with 8 concurrent requests vs one at a time, and vs
   llama.cpp's own server on the same GGUF file (``--llama-cpp-python PYTHON``, an interpreter
   with ``llama-cpp-python[server]``; it is not a project dependency).

Run: ``python bench/bench_generate.py [--n 5000] [--only 1,2,3,4]``; figures go to
``bench/results/bench_generate.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.store import Corpus  # noqa: E402
from syphus.engine.pipeline import GenerateOptions, build_requests, generate, load_annotations  # noqa: E402
from syphus.engine.requestlog import RequestLog  # noqa: E402
from syphus.testing.echo_task import EchoTask, write_notes  # noqa: E402
from syphus.testing.openai_server import ServerProcess  # noqa: E402
from trainer.net import free_port  # noqa: E402

ECHO = "syphus.testing.echo_task:EchoTask"
PARAMS = {"temperature": 0.7, "max_tokens": 64}


class Server(ServerProcess):
    """The test server in its own process (its own core), so the client is measured alone."""

    def __init__(self, latency: str, tmp: Path):
        super().__init__(
            "--latency", latency, port_file=tmp.resolve() / f"port-{os.getpid()}-{random.random()}"
        )
        self.base = self.base_url


def server_key(model: str, messages: list[dict]) -> str:
    body = {"model": model, "messages": messages, **PARAMS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run_pipeline(base: str, notes: Path, corpus: Path, *, concurrency: int, backend: str, model: str) -> dict:
    opts = GenerateOptions(model=model, api_base=base, backend=backend, concurrency=concurrency,
                           max_tokens=PARAMS["max_tokens"], temperature=PARAMS["temperature"], timeout=60)  # fmt: skip
    return generate(EchoTask(), [notes], corpus, opts)


def chunked_threadpool_baseline(base: str, notes: Path, *, concurrency: int, model: str) -> float:
    """The original Syphus: a pool of threads, one chunk at a time, each chunk waits for its slowest."""
    task = EchoTask()
    reqs, _ = build_requests(task, load_annotations(task, [notes], None).annotations, model, PARAMS)
    local = threading.local()  # a sync httpx.Client is not safe across threads: one per thread

    def send(r):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=60)
        resp = local.client.post("/chat/completions", json={"model": model, "messages": r.messages, **PARAMS})
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"]

    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for i in range(0, len(reqs), concurrency):
            list(pool.map(send, reqs[i : i + concurrency]))
    wall = time.perf_counter() - t
    return len(reqs) / wall


def zero_overhead_req_per_s(n: int, in_flight: int, mean: float, sigma: float, seed: int = 0) -> float:
    """What a client with no overhead at all would get from the server's own latency draws.

    The server draws latencies from ``random.Random(seed)`` in arrival order; a perfect client
    refills each of its ``in_flight`` slots the instant it frees, so request i starts when the
    earliest slot frees. The difference from in-flight / mean latency is the drain at the end:
    the last requests finish one by one with fewer and fewer in flight.
    """
    import heapq

    from syphus.testing.openai_server import sample_latency

    rng = random.Random(seed)
    slots = [0.0] * in_flight
    spec = f"lognormal:{mean}:{sigma}"
    for _ in range(n):
        heapq.heappush(slots, heapq.heappop(slots) + sample_latency(spec, rng))
    return n / max(slots)


def bench_throughput(n: int, tmp: Path) -> dict:
    srv = Server("lognormal:0.5:0.5", tmp)
    try:
        notes = write_notes(tmp / "t1.jsonl", n, prefix="t1")
        s = run_pipeline(srv.base, notes, tmp / "c1", concurrency=256, backend="http", model="m1")
        ideal = 256 / 0.5
        perfect = zero_overhead_req_per_s(n, 256, 0.5, 0.5)
        base_notes = write_notes(tmp / "t1b.jsonl", n, prefix="t1b")
        baseline = chunked_threadpool_baseline(srv.base, base_notes, concurrency=256, model="m1")
    finally:
        srv.close()
    return {
        "requests": n, "in_flight": 256, "latency": "lognormal mean 0.5 s sigma 0.5",
        "engine_req_per_s": s["req_per_s"], "ideal_req_per_s": ideal, "fraction_of_ideal": s["req_per_s"] / ideal,
        "zero_overhead_client_req_per_s": perfect, "fraction_of_zero_overhead_client": s["req_per_s"] / perfect,
        "chunked_threadpool_req_per_s": baseline, "speedup_vs_chunked": s["req_per_s"] / baseline,
        "errors": s["errors"],
    }  # fmt: skip


def bench_overhead(n: int, tmp: Path) -> dict:
    srv = Server("const:0", tmp)
    try:
        notes = write_notes(tmp / "t2.jsonl", n, prefix="t2")
        http = run_pipeline(srv.base, notes, tmp / "c2a", concurrency=64, backend="http", model="openai/m2")
        lite = run_pipeline(
            srv.base, notes, tmp / "c2b", concurrency=64, backend="litellm", model="openai/m2"
        )
    finally:
        srv.close()
    return {
        "requests": n, "latency": "0", "http_req_per_s": http["req_per_s"], "litellm_req_per_s": lite["req_per_s"],
        "speedup_vs_litellm": http["req_per_s"] / lite["req_per_s"], "errors": http["errors"] + lite["errors"],
    }  # fmt: skip


def bench_kill(n: int, kills: int, tmp: Path, seed: int = 0) -> dict:
    srv = Server("lognormal:0.05:0.5", tmp)
    rng = random.Random(seed)
    notes = write_notes(tmp / "t3.jsonl", n, prefix="t3")
    corpus = tmp / "c3"
    task = EchoTask()
    reqs, _ = build_requests(task, load_annotations(task, [notes], None).annotations, "m3", PARAMS)
    skey = {r.key: server_key("m3", r.messages) for r in reqs}
    cmd = [sys.executable, "-m", "syphus.cli", "generate", "--task", ECHO, "--annotations", str(notes),
           "--corpus", str(corpus), "--model", "m3", "--api-base", srv.base, "--concurrency", "64", "--no-progress",
           "--max-tokens", "64", "--temperature", "0.7"]  # fmt: skip

    def finished() -> set[str]:
        if not (corpus / "corpus.duckdb").exists():
            return set()
        with Corpus(corpus) as c:
            RequestLog(c).close()  # replays the journal of the killed run
            return {r[0] for r in c.con.execute("SELECT key FROM requests WHERE status='done'").fetchall()}

    lost = asked_again = resent_in_flight = 0
    prev_done: set[str] = set()
    try:
        for _ in range(kills):
            before = srv.stats()["requests"]
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
            time.sleep(rng.uniform(2.5, 5.0))  # ~2 s of interpreter start-up, then generation
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            after = srv.stats()["requests"]
            done = finished()
            lost += len(prev_done - done)  # a reply once stored must stay stored
            # a key finished before this run was started must not have been asked in it
            asked_again += sum(after.get(skey[k], 0) > before.get(skey[k], 0) for k in prev_done)
            # keys asked in this run that the killed run never stored: in flight at the kill, asked again later
            resent_in_flight += sum(
                1 for k in skey if after.get(skey[k], 0) > before.get(skey[k], 0) and k not in done
            )
            prev_done = done
        before = srv.stats()["requests"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        after = srv.stats()["requests"]
        done = finished()
        lost += len(prev_done - done)
        asked_again += sum(after.get(skey[k], 0) > before.get(skey[k], 0) for k in prev_done)
        with Corpus(corpus) as c:
            pairs, distinct = c.con.execute(
                "SELECT count(*), count(DISTINCT id) FROM instructions"
            ).fetchone()
    finally:
        srv.close()
    return {
        "requests": n, "kills": kills, "final_exit": r.returncode, "done_at_end": len(done),
        "lost_replies": lost + (n - len(done)), "finished_requests_asked_again": asked_again,
        "in_flight_at_kill_resent": resent_in_flight, "pairs": pairs, "duplicate_pair_ids": pairs - distinct,
    }  # fmt: skip


LOCAL_PROMPTS = [
    "Describe a busy kitchen in a restaurant during dinner service.",
    "Describe a quiet beach early in the morning.",
    "Describe a children's playground on a sunny afternoon.",
    "Describe a library reading room in winter.",
    "Describe a train station at rush hour.",
    "Describe a vegetable garden in late summer.",
    "Describe a mountain hut during a storm.",
    "Describe a street market in a small town.",
]


def local_requests(max_tokens: int):
    """The 8 requests both sides of item 4 get: long-form replies, as generation asks for."""
    from syphus.engine.backends import ChatRequest

    return [
        ChatRequest(
            key=str(i),
            model="local/smollm2-135m",
            params={"temperature": 0, "max_tokens": max_tokens},
            messages=[{"role": "user", "content": p}],
        )  # fmt: skip
        for i, p in enumerate(LOCAL_PROMPTS)
    ]


def bench_local(max_tokens: int) -> dict:
    """The in-process backend: the same 8 requests one at a time, then all 8 at once."""
    from syphus.engine.local import LocalBackend, compute_dtype

    reqs = local_requests(max_tokens)

    async def go():
        b = LocalBackend("local/smollm2-135m")
        await b.complete(reqs[0])  # load the model and warm up
        t = time.perf_counter()
        one = [await b.complete(r) for r in reqs]
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        eight = await asyncio.gather(*(b.complete(r) for r in reqs))
        t8 = time.perf_counter() - t
        await b.aclose()
        return (
            sum(c.completion_tokens for c in one) / t1,
            sum(c.completion_tokens for c in eight) / t8,
            b.batches,
        )

    single, batched, batches = asyncio.run(go())
    return {"max_tokens": max_tokens, "dtype": str(compute_dtype()).removeprefix("torch."),
            "one_at_a_time_tok_per_s": single, "eight_concurrent_tok_per_s": batched,
            "speedup": batched / single, "generate_call_sizes": batches[1:]}  # fmt: skip


def bench_llama_cpp(python: str, max_tokens: int, threads: int = 2) -> dict:
    """llama.cpp's own OpenAI-compatible server (llama-cpp-python[server], installed in the
    interpreter ``python``) on the very GGUF file the local backend loads: the same 8 requests
    one at a time and all at once."""
    from curation.pretrained import smollm2_gguf

    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        proc = subprocess.Popen(
            [python, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--n_threads", str(threads),
             "--n_ctx", "2048", "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=open(Path(d) / "server.log", "w"),
            # ggml synchronises its threads at every op: passive OpenMP waits would slow it 4x
            env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"},
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}/v1"
            for _ in range(600):
                try:
                    if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            reqs = local_requests(max_tokens)

            def send(r) -> int:
                body = {"model": "smollm2", "messages": r.messages, **r.params}
                resp = httpx.post(f"{base}/chat/completions", json=body, timeout=600)
                resp.raise_for_status()
                return int(resp.json()["usage"]["completion_tokens"])

            send(reqs[0])  # warm up
            t = time.perf_counter()
            single = sum(send(r) for r in reqs) / (time.perf_counter() - t)
            t = time.perf_counter()
            with ThreadPoolExecutor(len(reqs)) as pool:
                concurrent = sum(pool.map(send, reqs)) / (time.perf_counter() - t)
        finally:
            proc.terminate()
            proc.wait()
    return {"threads": threads, "gguf": smollm2_gguf().name, "one_at_a_time_tok_per_s": single,
            "eight_concurrent_tok_per_s": concurrent}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="requests for items 1 and 2")
    ap.add_argument("--kill-n", type=int, default=3000, help="requests for item 3")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--local-tokens", type=int, default=128)
    ap.add_argument(
        "--llama-cpp-python",
        default=None,
        help="an interpreter with llama-cpp-python[server] installed: item 4 also measures llama.cpp's server",
    )
    ap.add_argument("--only", default="1,2,3,4")
    a = ap.parse_args()
    only = {x.strip() for x in a.only.split(",")}
    out_path = ROOT / "bench" / "results" / "bench_generate.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results["machine"] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "1" in only:
            results["1_throughput_256_in_flight"] = bench_throughput(a.n, tmp)
            print(json.dumps(results["1_throughput_256_in_flight"], indent=1), flush=True)
        if "2" in only:
            results["2_pipeline_overhead_vs_litellm"] = bench_overhead(a.n, tmp)
            print(json.dumps(results["2_pipeline_overhead_vs_litellm"], indent=1), flush=True)
        if "3" in only:
            results["3_kill9_resume"] = bench_kill(a.kill_n, a.kills, tmp)
            print(json.dumps(results["3_kill9_resume"], indent=1), flush=True)
        if "4" in only:
            local = bench_local(a.local_tokens)
            if a.llama_cpp_python:
                llama = bench_llama_cpp(a.llama_cpp_python, a.local_tokens)
                local["llama_cpp_server"] = llama
                local["fraction_of_llama_cpp_concurrent"] = local["eight_concurrent_tok_per_s"] / max(
                    llama["eight_concurrent_tok_per_s"], llama["one_at_a_time_tok_per_s"]
                )
            results["4_local_smollm2"] = local
            print(json.dumps(local, indent=1), flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
