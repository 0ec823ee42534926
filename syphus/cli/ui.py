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

from schemas.progress import Progress as ProgressCallback
from schemas.progress import no_progress

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second (blank until rich has enough samples to estimate it)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f}/s", style="cyan")


out = Console()


@contextmanager
def progress_bar(
    description: str, total: int | None = None, *, bytes_rate: bool = False, enabled: bool = True
) -> Iterator[ProgressCallback]:
    """The one progress display: yields a :class:`schemas.progress.Progress` callback and shows
    done/total, rate, ETA (and MB with ``bytes_rate``) plus whatever status the stage reports.
    A ``label`` from the stage starts a new bar for its next phase."""
    if not enabled:
        yield no_progress
        return
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn()]
    if bytes_rate:
        cols.append(TextColumn("{task.fields[mb]:.1f} MB"))
    cols += [RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
    with Progress(*cols, console=console, transient=False, refresh_per_second=4) as p:
        state = {"tid": p.add_task(description, total=total, mb=0.0, status=""), "bytes": 0}

        def advance(n: int = 1, nbytes: int = 0, *, total=None, label=None, status=None) -> None:
            if label is not None:
                if p.tasks[state["tid"]].completed or p.tasks[state["tid"]].total is not None:
                    state["tid"], state["bytes"] = p.add_task(label, total=total, mb=0.0, status=""), 0
                else:  # the first bar has not started yet: it becomes this phase's bar
                    p.update(state["tid"], description=label, total=total)
            elif total is not None:
                p.update(state["tid"], total=total)
            state["bytes"] += nbytes
            fields = {} if status is None else {"status": status}
            p.update(state["tid"], advance=n, mb=state["bytes"] / 1e6, **fields)

        yield advance


def summary_table(title: str, rows: list[tuple], headers: tuple[str, ...] = ("", "")) -> None:
    t = Table(title=title, show_header=any(headers), title_justify="left")
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    out.print(t)
