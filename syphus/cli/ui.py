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
    A ``label`` from the stage starts a new bar for its next phase. Nothing is drawn until the
    stage first reports, and a bar is wiped when the work fails, so an error stays one line."""
    if not enabled:
        yield no_progress
        return
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn()]
    if bytes_rate:
        cols.append(TextColumn("{task.fields[mb]:.1f} MB"))
    cols += [RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
    p = Progress(*cols, console=console, transient=False, refresh_per_second=4)
    state: dict = {"tid": None, "bytes": 0, "first": (description, total)}

    def advance(n: int = 1, nbytes: int = 0, *, total=None, label=None, status=None) -> None:
        if state["tid"] is None:  # first report: draw the bar, titled by the stage if it says
            p.start()
            name, first_total = state["first"]
            state["tid"] = p.add_task(
                label or name, total=first_total if total is None else total, mb=0.0, status=""
            )
        elif label is not None:  # a new phase: a bar of its own
            state["tid"], state["bytes"] = p.add_task(label, total=total, mb=0.0, status=""), 0
        elif total is not None:
            p.update(state["tid"], total=total)
        state["bytes"] += nbytes
        fields = {} if status is None else {"status": status}
        p.update(state["tid"], advance=n, mb=state["bytes"] / 1e6, **fields)

    try:
        yield advance
    except BaseException:
        if state["tid"] is not None:  # wipe the bar without a trace: the error is the last word
            p.live.transient, quiet, console.quiet = True, console.quiet, True
            try:
                p.stop()
            finally:
                console.quiet = quiet
        raise
    if state["tid"] is not None:
        p.stop()


def summary_table(title: str, rows: list[tuple], headers: tuple[str, ...] = ("", "")) -> None:
    t = Table(title=title, show_header=any(headers), title_justify="left")
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    out.print(t)
