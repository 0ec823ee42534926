"""Bad bytes the sweep feeds to every reader."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from PIL import Image


def png(size: tuple[int, int] = (16, 16)) -> bytes:
    """A small valid PNG: the wrong type wherever JSON, YAML or weights are expected."""
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def pixel_bomb() -> bytes:
    """A PNG that declares 12000x9000 pixels (108 M) in a few kB."""
    buf = io.BytesIO()
    Image.new("1", (12000, 9000)).save(buf, "PNG")
    return buf.getvalue()


class Marker:
    """Unpickling this creates the file at ``path``: proof that a loader ran code from a file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil(marker: Path) -> bytes:
    """A plain pickle shaped like a state dict whose value runs code when unpickled."""
    return pickle.dumps({"weight": Marker(marker)})


def evil_zip(marker: Path) -> bytes:
    """The same payload in torch.save's zip container (what a real .pt/.bin is)."""
    import torch

    buf = io.BytesIO()
    torch.save({"weight": Marker(marker)}, buf)
    return buf.getvalue()
