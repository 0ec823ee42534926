"""Reading benchmark files as distributed: Hugging Face Hub parquet shards and VLMEvalKit TSVs.

Both give rows as plain dicts (column -> Python value). Each benchmark in benchmarks.py declares
the fields it needs and their kinds; a missing field or one of the wrong type is a one-line
SyphusError naming the file and the field. Nothing here downloads anything.

Hub parquet: a dataset's files sit under `<config>/<split>-NNNNN-of-NNNNN[-hash].parquet` (or
`data/<split>-...`). An `Image` feature is stored as a struct {bytes: binary, path: string}; a
`Sequence(Image)` as a list of such structs.

VLMEvalKit TSV: one tab-separated file per benchmark; `image` holds base64 of the encoded image, a
JSON-style list of them, or (to save space) the `index` of another row whose image it shares.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import SyphusError

# Field kinds a benchmark may ask for.
STR, INT, FLOAT, IMAGE, IMAGES, STR_LIST, STRUCT, STR_OR_LIST, INT_OR_STR = (
    "string",
    "integer",
    "float",
    "image",
    "list of images",
    "list of strings",
    "struct",
    "string or list of strings",
    "integer or string",
)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    required: bool = True  # False: the column may be absent (a later version of the dataset added it)


@dataclass
class Row:
    values: dict
    file: Path
    number: int  # 0-based row number within the file

    @property
    def where(self) -> str:
        return f"{self.file}: row {self.number}"


_SPLIT_FILE = re.compile(r"^(?P<split>[A-Za-z0-9_]+?)-\d{5}-of-\d{5}")


def split_of(path: Path) -> str | None:
    """The split a Hub shard belongs to, from its name ('testmini-00000-of-00001-x.parquet')."""
    m = _SPLIT_FILE.match(path.name)
    return m.group("split") if m else None


def find_files(
    path: Path, *, bench: str, split: str | None, default_split: str | None, config_dirs: tuple[str, ...] = ()
) -> tuple[str, list[Path]]:
    """('parquet' | 'tsv', the files to read) for a benchmark at `path` (a file or a folder).

    In a folder, parquet shards win over TSVs; a preferred config folder (MMBench's `en`, ScienceQA's
    `ScienceQA-IMG`) narrows the choice when the folder holds several configs; then the split."""
    path = Path(path)
    if not path.exists():
        raise SyphusError(f"{path}: no such file or folder for benchmark {bench!r}; download its files first")
    if path.is_file():
        if path.suffix == ".parquet":
            return "parquet", [path]
        if path.suffix == ".tsv":
            return "tsv", [path]
        raise SyphusError(f"{path}: not a .parquet or .tsv file (benchmark {bench!r})")
    parquet = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not parquet:
        tsv = sorted(p for p in path.rglob("*.tsv") if p.is_file())
        if len(tsv) == 1:
            return "tsv", tsv
        if len(tsv) > 1:
            names = ", ".join(p.name for p in tsv[:5])
            raise SyphusError(f"{path}: several TSV files ({names}); point --data at the one for {bench!r}")
        raise SyphusError(f"{path}: no .parquet or .tsv files for benchmark {bench!r}")
    for config in config_dirs:
        chosen = [
            p for p in parquet if config.lower() in (part.lower() for part in p.relative_to(path).parts[:-1])
        ]
        if chosen:
            parquet = chosen
            break
    splits = sorted({s for s in (split_of(p) for p in parquet) if s})
    want = split or default_split
    if splits and want:
        picked = [p for p in parquet if split_of(p) == want]
        if not picked:
            if split is None and len(splits) == 1:
                return "parquet", parquet
            raise SyphusError(
                f"{path}: no {want!r} split for {bench!r} (splits found: {', '.join(splits)}); choose one with split"
            )
        return "parquet", picked
    if split and not splits:
        raise SyphusError(
            f"{path}: the files carry no split in their names, so split {split!r} cannot be chosen"
        )
    return "parquet", parquet


# ---------------------------------------------------------------- parquet


def _kind_of(t) -> str:
    import pyarrow as pa

    def is_image(x) -> bool:
        return pa.types.is_struct(x) and x.get_field_index("bytes") >= 0

    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return STR
    if pa.types.is_integer(t):
        return INT
    if pa.types.is_floating(t):
        return FLOAT
    if is_image(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return IMAGE
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        v = t.value_type
        if is_image(v) or pa.types.is_binary(v):
            return IMAGES
        if pa.types.is_string(v) or pa.types.is_large_string(v):
            return STR_LIST
        return f"list of {v}"
    if pa.types.is_struct(t):
        return STRUCT
    if pa.types.is_null(t):
        return "null"
    return str(t)


def _accepts(want: str, have: str) -> bool:
    if want == have or have == "null":
        return True
    if want == FLOAT and have == INT:
        return True
    if want == STR_OR_LIST and have in (STR, STR_LIST):
        return True
    if want == INT_OR_STR and have in (INT, STR):
        return True
    return False


def read_parquet(files: list[Path], fields: list[Field]) -> Iterator[Row]:
    """Rows of the Hub parquet shards, after checking every file has the fields with their kinds."""
    import pyarrow.parquet as pq

    for file in files:
        try:
            pf = pq.ParquetFile(file)
        except Exception as e:  # pyarrow raises several types for a file that is not parquet
            raise SyphusError(f"{file}: not a readable parquet file ({str(e)[:200]})") from e
        schema = pf.schema_arrow
        columns = []
        for f in fields:
            idx = schema.get_field_index(f.name)
            if idx < 0:
                if f.required:
                    have = ", ".join(schema.names)
                    raise SyphusError(
                        f"{file}: field '{f.name}' missing (expected {f.kind}; the file has: {have})"
                    )
                continue
            have = _kind_of(schema.field(idx).type)
            if not _accepts(f.kind, have):
                raise SyphusError(f"{file}: field '{f.name}' is {have}, expected {f.kind}")
            columns.append(f.name)
        number = 0
        try:
            for batch in pf.iter_batches(batch_size=64, columns=columns):
                for values in batch.to_pylist():
                    yield Row(values, file, number)
                    number += 1
        except SyphusError:
            raise
        except OSError as e:
            raise SyphusError(f"{file}: row {number}: unreadable parquet data ({str(e)[:200]})") from e


def image_bytes(value, row: Row, field: str) -> bytes | None:
    """The encoded bytes of one Hub `Image` value ({bytes, path} struct or raw binary); None when
    the value is null. An image stored as a path only is read from beside the parquet file."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        data = value.get("bytes")
        if data:
            return bytes(data)
        rel = value.get("path")
        if rel:
            p = (row.file.parent / rel).resolve()
            if p.is_file():
                return p.read_bytes()
            raise SyphusError(
                f"{row.where}: field '{field}' has no bytes and its path {rel!r} is not beside the file"
            )
        return None
    raise SyphusError(f"{row.where}: field '{field}' is not an image ({type(value).__name__})")


# ---------------------------------------------------------------- VLMEvalKit TSV


def read_tsv(file: Path, fields: list[Field]) -> Iterator[Row]:
    """Rows of a VLMEvalKit TSV (all values strings; '' and 'nan' become None), with `image`
    resolved to a list of encoded images (base64 decoded, index references followed)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images exceed the default 128 KiB
    try:
        with open(file, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            header = reader.fieldnames or []
            for f in fields:
                if f.required and f.name not in header:
                    raise SyphusError(
                        f"{file}: field '{f.name}' missing (expected {f.kind}; the file has: {', '.join(header)})"
                    )
            rows = []
            for number, raw in enumerate(reader):
                if None in raw:
                    raise SyphusError(f"{file}: row {number}: more cells than the header has columns")
                rows.append(
                    Row(
                        {k: (None if v in ("", "nan", "NaN", "None") else v) for k, v in raw.items()},
                        file,
                        number,
                    )
                )
    except UnicodeDecodeError as e:
        raise SyphusError(f"{file}: not UTF-8 text (byte {e.start})") from e
    if "image" in header:
        by_index = {r.values.get("index"): r.values.get("image") for r in rows}
        for r in rows:
            r.values["image"] = _tsv_images(r, by_index)
    for r in rows:
        for f in fields:
            v = r.values.get(f.name)
            if v is None or f.kind in (STR, IMAGE, IMAGES, STR_OR_LIST):
                continue
            r.values[f.name] = _tsv_value(v, f, r)
        yield r


def _tsv_value(v: str, f: Field, row: Row):
    try:
        if f.kind == INT:
            return int(float(v))
        if f.kind == FLOAT:
            return float(v)
        if f.kind == STR_LIST:
            parsed = ast.literal_eval(v) if v.startswith("[") else [v]
            if not isinstance(parsed, list):
                raise ValueError("not a list")
            return [str(x) for x in parsed]
    except (ValueError, SyntaxError) as e:
        raise SyphusError(f"{row.where}: field '{f.name}' is {v[:40]!r}, expected {f.kind}") from e
    return v


def _tsv_images(row: Row, by_index: dict) -> list[bytes]:
    value = row.values.get("image")
    # Which row's image this is: MME's TSV has two questions per image, the second referring to the first.
    row.values["_image_row"] = row.values.get("index")
    if value is None:
        return []
    if len(value) <= 64:  # a reference to the row whose image this one shares
        target = by_index.get(value)
        if target is None or len(target) <= 64:
            raise SyphusError(f"{row.where}: field 'image' refers to index {value!r}, which holds no image")
        row.values["_image_row"] = value
        value = target
    items = [value]
    if value.startswith("["):
        try:
            items = [str(x) for x in ast.literal_eval(value)]
        except (ValueError, SyntaxError) as e:
            raise SyphusError(
                f"{row.where}: field 'image' is neither base64 nor a list of base64 strings"
            ) from e
    out = []
    for item in items:
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as e:
            raise SyphusError(f"{row.where}: field 'image' is not valid base64 ({e})") from e
    return out
