"""Inspecting encoded image bytes without re-encoding them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image

from schemas.errors import SyphusError

# Our own limit on decoded pixels (about 89.5 megapixels, the figure PIL warns at), checked from
# the header before any pixel is decoded: a few kB of PNG can otherwise claim gigabytes.
DEFAULT_MAX_PIXELS = 89_478_485


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    width: int
    height: int
    format: str
    nbytes: int


def inspect_image(data: bytes, *, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Hash the bytes and decode them fully; raise SyphusError for corrupt or oversized images.

    The size is checked from the header before decoding (decompression bombs never decode);
    then every pixel is decoded once, so truncated or damaged files are refused here rather
    than failing a later stage. The stored bytes stay exactly as given.
    """
    if not data:
        raise SyphusError(f"{where}: empty image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, with a clear message
            try:
                with Image.open(io.BytesIO(data)) as im:
                    width, height = im.size
                    fmt = (im.format or "").upper()
                    if width * height <= max_pixels:
                        if fmt == "JPEG":
                            # 1/8-scale DCT decoding still reads every byte of the entropy-coded
                            # data (so truncation and damage are caught) but skips most of the
                            # inverse DCT: 1.5x faster on a 640x480 photo.
                            im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
                        im.load()
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except Exception as e:  # PIL raises many types for bad bytes
        raise SyphusError(f"{where}: corrupt image bytes ({type(e).__name__}: {_one_line(e)})") from e
    if width * height > max_pixels:
        raise SyphusError(
            f"{where}: image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (possible decompression bomb; raise --max-pixels if it is genuine)"
        )
    return ImageInfo(hashlib.sha256(data).hexdigest(), width, height, fmt, len(data))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def decode_base64(s: str | bytes, *, where: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding and line breaks."""
    if isinstance(s, str):
        s = s.encode("ascii", errors="strict") if s.isascii() else None
        if s is None:
            raise SyphusError(f"{where}: base64 text contains non-ASCII characters")
    s = b"".join(s.split())
    if s.startswith(b"data:"):  # data URLs: data:image/jpeg;base64,....
        s = s.split(b",", 1)[-1]
    altchars = b"-_" if (b"-" in s or b"_" in s) else None
    s += b"=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SyphusError(f"{where}: invalid base64 ({e})") from e


def parquet_leaf_index(pf, column: str) -> int:
    """Where ``column`` sits among a ``pyarrow.parquet.ParquetFile``'s physical columns, the index
    its row-group metadata uses."""
    md = pf.metadata
    return next(
        (
            i
            for i in range(md.num_columns)
            if md.row_group(0).column(i).path_in_schema.split(".")[0] == column
        ),
        pf.schema_arrow.get_field_index(column),
    )


# Encoded images (JPEG, PNG) barely compress, nor does their base64 (about 1.3x); a base64 column
# that inflates many times over to many megabytes holds something else: a decompression bomb.
INFLATE_RATIO, INFLATE_FLOOR = 50, 16 << 20


def refuse_inflating_column(pf, column: str, path) -> None:
    """Refuse an images parquet whose image column inflates like a decompression bomb, from its
    metadata alone (import and training both read such files)."""
    md = pf.metadata
    if md.num_rows == 0:
        return
    leaf = parquet_leaf_index(pf, column)
    for g in range(md.num_row_groups):
        c = md.row_group(g).column(leaf)
        big, small = c.total_uncompressed_size, max(1, c.total_compressed_size)
        if big > INFLATE_FLOOR and big > INFLATE_RATIO * small:
            raise SyphusError(
                f"{path}: row group {g}: the '{column}' column inflates from {small} bytes to "
                f"{big / 2**20:.0f} MB ({big // small}x); encoded images do not compress like that "
                "(possible decompression bomb)"
            )
