"""The asyncio scheduler: N requests in flight, no batch barrier, rate limits, retries, budget.

Each of N workers takes the next request as soon as its previous one is finished, so a slow
request holds up only its own worker. Before sending, a worker waits for the RPM and TPM
buckets and for any cool-down a ``Retry-After`` imposed; a retryable failure is retried with
exponential backoff and full jitter; a fatal one stops every worker.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from syphus.engine.backends import (
    Backend,
    ChatRequest,
    Completion,
    FatalBackendError,
    RequestFailed,
    Retryable,
)
from syphus.engine.keys import redact
from syphus.engine.pricing import Price


@dataclass
class SchedulerConfig:
    concurrency: int = 16
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 120.0
    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_cost: float | None = None
    seed: int | None = None


@dataclass
class Stats:
    total: int = 0
    done: int = 0
    errors: int = 0  # requests that failed for good in this run
    retries: int = 0
    quarantined: int = 0
    pairs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    in_flight: int = 0
    started: float = field(default_factory=time.perf_counter)
    last_errors: list[str] = field(default_factory=list)

    def elapsed(self) -> float:
        return max(1e-9, time.perf_counter() - self.started)

    def note_error(self, msg: str) -> None:
        self.last_errors.append(redact(msg) or msg)  # printed at the end of a run
        del self.last_errors[:-5]


@dataclass
class Outcome:
    """What became of one request: a completion, or the error it finally failed with."""

    req: ChatRequest
    completion: Completion | None
    error: str | None
    attempts: int
    started_at: float  # wall clock (time.time)
    latency_s: float


class TokenBucket:
    """``rate`` units a second, bursts up to ``capacity``; waiters are served in order."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, n: float) -> None:
        async with self._lock:
            need = min(n, self.capacity)  # a request bigger than a second's worth waits for a full bucket
            while True:
                self._refill()
                if self.tokens >= need:
                    self.tokens -= n  # may go negative: a big request delays the next ones
                    return
                await asyncio.sleep((need - self.tokens) / self.rate)

    def give_back(self, n: float) -> None:
        self._refill()
        self.tokens = min(self.capacity, self.tokens + n)


class Scheduler:
    def __init__(
        self,
        backend: Backend,
        config: SchedulerConfig,
        price: Price,
        on_outcome: Callable[[Outcome], None],
        stats: Stats | None = None,
    ):
        self.backend = backend
        self.cfg = config
        self.price = price
        self.on_outcome = on_outcome
        self.stats = stats or Stats()
        self.rpm = TokenBucket(config.rpm) if config.rpm else None
        self.tpm = TokenBucket(config.tpm) if config.tpm else None
        self._resume_at = 0.0  # monotonic time before which nobody sends (Retry-After)
        self._reserved = 0.0  # estimated cost of requests in flight
        self._rng = random.Random(config.seed)
        self.stop_reason: str | None = None  # "budget" or "fatal"
        self.fatal: BaseException | None = None

    def _estimate_cost(self, req: ChatRequest) -> float:
        return self.price.cost(req.est_prompt_tokens, int(req.params.get("max_tokens") or 0))

    async def run(self, requests: Iterable[ChatRequest]) -> Stats:
        it = iter(requests)
        workers = [asyncio.create_task(self._worker(it)) for _ in range(max(1, self.cfg.concurrency))]
        try:
            await asyncio.gather(*workers)
        except FatalBackendError as e:
            self.fatal = e
            self.stop_reason = "fatal"
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return self.stats

    async def _worker(self, it) -> None:
        while self.stop_reason is None:
            req = next(it, None)
            if req is None:
                return
            est = self._estimate_cost(req)
            if self.cfg.max_cost is not None and self.stats.cost + self._reserved + est > self.cfg.max_cost:
                self.stop_reason = "budget"
                return
            self._reserved += est
            try:
                outcome = await self._send(req)
            finally:
                self._reserved -= est
            self._account(outcome)
            self.on_outcome(outcome)

    def _account(self, o: Outcome) -> None:
        s = self.stats
        if o.completion is not None:
            s.done += 1
            s.prompt_tokens += o.completion.prompt_tokens
            s.completion_tokens += o.completion.completion_tokens
            s.cost += self.price.cost(o.completion.prompt_tokens, o.completion.completion_tokens)
        else:
            s.errors += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after + self._rng.uniform(0, 0.1 * retry_after + 0.05)
        return self._rng.uniform(0, min(self.cfg.backoff_max, self.cfg.backoff_base * 2 ** (attempt - 1)))

    async def _send(self, req: ChatRequest) -> Outcome:
        t_wall = time.time()
        t0 = time.perf_counter()
        last = "not sent"
        max_tokens = int(req.params.get("max_tokens") or 0)
        while req.attempts < self.cfg.max_attempts:
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.rpm:
                await self.rpm.take(1)
            if self.tpm:
                await self.tpm.take(req.est_prompt_tokens + max_tokens)
            req.attempts += 1
            self.stats.in_flight += 1
            try:
                # An in-process model is CPU-bound, not waiting on a network: a timeout would only
                # abandon finished work and queue it again behind itself.
                limit = None if getattr(self.backend, "in_process", False) else self.cfg.timeout
                c = await asyncio.wait_for(self.backend.complete(req), limit)
            except (Retryable, asyncio.TimeoutError) as e:
                retry_after = getattr(e, "retry_after", None)
                last = redact(str(e)) or f"timeout after {self.cfg.timeout:g} s"
                self.stats.note_error(last)
                if retry_after:
                    self._resume_at = max(self._resume_at, time.monotonic() + retry_after)
                if req.attempts < self.cfg.max_attempts:
                    self.stats.retries += 1
                    await asyncio.sleep(self._backoff(req.attempts, retry_after))
                continue
            except RequestFailed as e:
                last = redact(str(e))
                self.stats.note_error(last)
                break
            finally:
                self.stats.in_flight -= 1
            if self.tpm:
                self.tpm.give_back(req.est_prompt_tokens + max_tokens - c.prompt_tokens - c.completion_tokens)
            return Outcome(req, c, None, req.attempts, t_wall, time.perf_counter() - t0)
        return Outcome(req, None, f"{last} (after {req.attempts} attempt{'s' * (req.attempts != 1)})",
                       req.attempts, t_wall, time.perf_counter() - t0)  # fmt: skip
