"""The one exception type for errors a user can cause and fix."""

from __future__ import annotations

from contextlib import contextmanager


class SyphusError(Exception):
    """An error caused by input, configuration or environment, not by a bug.

    The message must name the file, line, record or field at fault and, where it helps,
    what to do about it. The CLI prints it on one line and exits non-zero.
    """

    def __init__(self, message: str, *, hint: str | None = None):
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


def first_validation_error(exc, *, where: str) -> SyphusError:
    """Turn a pydantic ValidationError into a one-line SyphusError naming the field."""
    errs = exc.errors()
    if not errs:
        return SyphusError(f"{where}: invalid record")
    e = errs[0]
    loc = ".".join(str(p) for p in e.get("loc", ())) or "<record>"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return SyphusError(f"{where}: field '{loc}': {e.get('msg', 'invalid')}{more}")


def read_yaml(path) -> object:
    """Parse a YAML file; a file that is not UTF-8 or not YAML is a one-line error naming it
    and, for YAML syntax, the line and column. Callers check existence (with their own wording)
    and the shape of what comes back."""
    from pathlib import Path

    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SyphusError(f"{path}: not UTF-8 text (byte {e.start})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None)
        raise SyphusError(f"{path}: {where}malformed YAML" + (f" ({problem})" if problem else "")) from e
    except ValueError as e:  # a value the YAML constructors refuse, e.g. an integer of 10 M digits
        raise SyphusError(f"{path}: unreadable YAML value ({str(e)[:200]})") from e


@contextmanager
def quiet_weights_refusal():
    """Around a weights-only load of a user's file: torch warns about a plain pickle's protocol
    just before it refuses the file, and the one-line error raised for that refusal says it all."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        yield
