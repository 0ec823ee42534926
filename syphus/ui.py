"""Terminal output shared by commands: progress bars with rate and ETA, summary tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second (blank until rich has enough samples to estimate it)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f}/s", style="cyan")


out = Console()


@contextmanager
def progress_bar(description: str, total: int | None, *, bytes_rate: bool = False) -> Iterator:
    """Yields ``advance(n_items, n_bytes)``; shows done/total, rate and ETA."""
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn()]
    if bytes_rate:
        cols.append(TextColumn("{task.fields[mb]:.1f} MB"))
    cols += [RateColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*cols, console=console, transient=False, refresh_per_second=4) as p:
        tid = p.add_task(description, total=total, mb=0.0)
        state = {"bytes": 0}

        def advance(n: int = 1, nbytes: int = 0) -> None:
            state["bytes"] += nbytes
            p.update(tid, advance=n, mb=state["bytes"] / 1e6)

        try:
            yield advance
        except BaseException:
            p.live.transient = True  # a failed command ends on its one error line, not a stale bar
            raise


def summary_table(title: str, rows: list[tuple], headers: tuple[str, ...] = ("", "")) -> None:
    t = Table(title=title, show_header=any(headers), title_justify="left")
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    out.print(t)
