"""The progress callback every long-running library function takes (the CLI draws the bar).

A stage calls ``progress(n)`` as it finishes ``n`` more items (``nbytes`` more bytes where bytes
are what takes the time), ``progress(0, total=N, label="embed images")`` when it starts a phase
whose size it has just learned, and ``progress(0, status="$0.02, 1 error")`` to show a running
figure. ``None`` means nobody is watching. Library code never imports a terminal library.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(
        self, n: int = 1, nbytes: int = 0, *, total: int | None = None, label: str | None = None,
        status: str | None = None,
    ) -> None: ...  # fmt: skip


def no_progress(n: int = 1, nbytes: int = 0, **_: object) -> None:
    """The callback used when the caller passed none."""
