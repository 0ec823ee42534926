"""Several endpoints (issue 12): the generate pipeline over two local servers vs one.

Each server is the local OpenAI-compatible test server in its own process, with the same
per-request latency and the same cap on requests handled at once (``--max-concurrent``, as a
GPU server's batch slots: requests beyond the cap wait in its queue). The client keeps the
same number of requests in flight in both runs, enough to fill two servers, so one server is
the bottleneck alone and two should give twice the throughput. Target: >= 1.8x. On a small
shared machine the servers' processes compete for the cores with the client and with each
other, which shows most at a short latency; each latency given is measured and reported.

Run: ``python bench/bench_endpoints.py [--n 1200] [--cap 16] [--latency const:0.25 --latency
const:0.1]``; figures go to ``bench/results/endpoints.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from syphus.engine.pipeline import GenerateOptions, generate  # noqa: E402
from syphus.testing.echo_task import EchoTask, write_notes  # noqa: E402
from syphus.testing.openai_server import ServerProcess  # noqa: E402


def capped_server(latency: str, cap: int, tmp: Path, name: str) -> ServerProcess:
    """The test server in its own process, serving at most ``cap`` requests at once."""
    return ServerProcess("--latency", latency, "--max-concurrent", str(cap), port_file=tmp / f"port-{name}")


def run(servers: list[ServerProcess], n: int, concurrency: int, tmp: Path, name: str) -> dict:
    notes = write_notes(tmp / f"{name}.jsonl", n, prefix=name)
    bases = [s.base_url for s in servers]
    opts = GenerateOptions(model="m", api_base=bases[0], extra_api_bases=bases[1:], concurrency=concurrency,
                           max_tokens=64, timeout=600)  # fmt: skip
    before = [s.stats()["total"] for s in servers]
    t0, cpu0 = time.perf_counter(), time.process_time()
    summary = generate(EchoTask(), [notes], tmp / f"corpus-{name}", opts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert summary["status"] == "done" and summary["done"] == n, summary
    return {
        "servers": len(servers),
        "requests": n,
        "wall_s": round(wall, 3),
        "req_per_s": round(n / wall, 1),
        # the client's own CPU, to tell a slow client from slow servers on a shared machine
        "client_cpu_ms_per_req": round(1000 * cpu / n, 2),
        "client_cpu_share": round(cpu / wall, 2),
        "per_server": [s.stats()["total"] - b for s, b in zip(servers, before, strict=True)],
    }


def measure(latency: str, cap: int, n: int, concurrency: int, tmp: Path) -> dict:
    servers = [capped_server(latency, cap, tmp, f"{latency}-{i}") for i in range(2)]
    try:
        run(servers[:1], min(200, n), concurrency, tmp, f"warmup-{len(latency)}")
        one = run(servers[:1], n, concurrency, tmp, f"one-{len(latency)}")
        two = run(servers, n, concurrency, tmp, f"two-{len(latency)}")
    finally:
        for s in servers:
            s.close()
    mean = float(latency.split(":")[1])
    out = {
        "latency": latency,
        "one_server": one,
        "two_servers": two,
        "ideal_one_req_per_s": round(cap / mean, 1) if mean > 0 else None,
        "speedup": round(two["req_per_s"] / one["req_per_s"], 2),
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1200, help="requests per run")
    p.add_argument("--cap", type=int, default=16, help="requests each server handles at once")
    p.add_argument("--latency", action="append", default=None,
                   help="per-request latency of each server (repeatable; default const:0.25 and const:0.1)")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=None, help="client in flight (default: 4 x cap)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "endpoints.json")
    a = p.parse_args()
    concurrency = a.concurrency or 4 * a.cap
    with tempfile.TemporaryDirectory() as d:
        runs = [
            measure(lat, a.cap, a.n, concurrency, Path(d)) for lat in a.latency or ["const:0.25", "const:0.1"]
        ]
    results = {
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "config": {"cap_per_server": a.cap, "client_in_flight": concurrency, "n": a.n},
        "runs": runs,
        "target_speedup": 1.8,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
