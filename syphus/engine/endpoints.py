"""Several servers of one model behind one backend: ``--api-base`` given more than once.

One vLLM or SGLang server per GPU (or per node) is how a model is served at scale without a
paid API. The pool sends each request to the live server with the fewest requests in flight,
so a slow or saturated server gets fewer and none waits behind a queue while another is idle.
A server whose requests fail again and again (connection refused or dropped, 5xx, timeouts)
is drained: it gets no more requests this run, a warning names it, and the requests it failed
are retried on the others by the scheduler. When every server is drained the run stops, as
it does when its one server is down. Which server answered is not part of a request's key, so
the request log and resume work as with one server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas.errors import SyphusError
from syphus.engine.backends import (
    Backend,
    ChatRequest,
    Completion,
    EndpointDown,
    EndpointFailure,
    FatalBackendError,
)

DRAIN_AFTER = 5  # failures in a row, with no success between, that drain a server


@dataclass
class Endpoint:
    base: str
    backend: Backend
    in_flight: int = 0
    sent: int = 0
    done: int = 0
    streak: int = 0  # failures since its last answer
    last_error: str = ""
    drained: bool = False


class EndpointPool:
    """A :class:`Backend` over several backends of the same model, least in flight first."""

    def __init__(self, members: list[Backend], *, drain_after: int = DRAIN_AFTER,
                 warn: Callable[[str], None] | None = None):  # fmt: skip
        bases = [getattr(m, "api_base", None) for m in members]
        if any(not b for b in bases):
            raise SyphusError(
                f"--api-base given {len(members)} times, but backend '{members[0].name}' does not send to an "
                "endpoint: several endpoints need an OpenAI-compatible server each (--backend http or litellm)"
            )
        self.endpoints = [Endpoint(str(b), m) for b, m in zip(bases, members, strict=True)]
        self.name = members[0].name
        self.drain_after = max(1, drain_after)
        self.warn = warn

    @property
    def drained(self) -> list[str]:
        return [e.base for e in self.endpoints if e.drained]

    def _pick(self) -> Endpoint:
        live = [e for e in self.endpoints if not e.drained]
        if not live:
            raise self._all_down()
        # ties go to the one that has had fewest, so equal servers take turns
        return min(live, key=lambda e: (e.in_flight, e.sent))

    async def complete(self, req: ChatRequest) -> Completion:
        ep = self._pick()
        ep.in_flight += 1
        ep.sent += 1
        try:
            c = await ep.backend.complete(req)
        except (EndpointFailure, EndpointDown) as e:
            self._failed(ep, str(e))
            if isinstance(e, EndpointDown):  # fatal for one server, not for the pool
                raise EndpointFailure(str(e)) from e
            raise  # the server failed, not the request: the scheduler retries it, on the others
        except FatalBackendError:
            raise  # a bad key or an unknown model is wrong on every server alike
        except Exception:
            ep.streak = 0  # it answered (429, a rejected request): the server is up
            raise
        finally:
            ep.in_flight -= 1
        ep.streak = 0
        ep.done += 1
        return c

    def _failed(self, ep: Endpoint, error: str) -> None:
        ep.streak += 1
        ep.last_error = error
        if ep.drained or ep.streak < self.drain_after:
            return
        ep.drained = True
        live = [e for e in self.endpoints if not e.drained]
        if not live:
            raise self._all_down()
        if self.warn is not None:
            self.warn(
                f"{ep.base}: drained after {ep.streak} failures in a row (last: {error}); going on with "
                f"{len(live)} of {len(self.endpoints)} endpoints ({', '.join(e.base for e in live)})"
            )

    def _all_down(self) -> FatalBackendError:
        why = "; ".join(f"{e.base} ({e.last_error})" for e in self.endpoints)
        return FatalBackendError(
            f"all {len(self.endpoints)} endpoints failed repeatedly: {why}",
            hint="are the servers running? rerun the same command to resume",
        )

    def counts(self) -> dict[str, int]:
        """Replies each endpoint gave this run."""
        return {e.base: e.done for e in self.endpoints}

    async def aclose(self) -> None:
        for e in self.endpoints:
            await e.backend.aclose()
