"""The streaming training dataset over a mix of exported shards and MIMIC-IT files.

The stream is built in two layers so that memory does not grow with the corpus:

1. *Records*: light text rows (instruction, answer, image ids, in-context examples) read
   row group by row group from parquet (or from a MIMIC-IT JSON file), sampled per dataset
   to ``num_samples`` by ``curation.mix.sample_positions`` (the sampler ``syphus mix`` uses, so
   its plan lists exactly the records that train; the sample is drawn once, not per epoch),
   interleaved across datasets at random in proportion to what each has left, and shuffled
   through a bounded buffer. The order is seeded by ``(seed, epoch)``, so every rank and worker
   sees the same global order without talking to each other.
2. *Batches*: the global order is cut into micro-batches; rank ``r`` of ``W`` takes every
   ``W``-th one and, inside a rank, DataLoader worker ``w`` of ``N`` every ``N``-th of those,
   so a DataLoader's round-robin over workers returns them in order. Only owned batches decode
   images and tokenize. Resuming at micro-batch ``k`` replays the text stream up to ``k``
   without decoding anything.

A sample whose image is missing or cannot be decoded is dropped with a counted warning; a
micro-batch that loses all its samples becomes a placeholder whose labels are all ignored,
so ranks stay in step and the loss stays finite. ``SkipGuard`` stops a run once a dataset
loses more than ``max_skipped_fraction`` of its samples, so broken data is never "trained".

Images come from parquet (ours: raw bytes; Otter's: base64 keyed by the pandas index) or from
Otter's older ``{id: base64}`` JSON, which is indexed in place (see ``_JsonImages``).
"""

from __future__ import annotations

import io
import json
import mmap
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from curation.formats import images_parquet_columns, read_context_map, read_instructions, read_shard_manifest
from curation.images import decode_base64, refuse_inflating_column
from curation.mix import mimicit_order, resolved_count, sample_positions
from schemas.errors import SyphusError
from schemas.mix import MixConfig, MixDataset
from trainer.collate import Batch, EncodedSample, collate
from trainer.prompting import IGNORE_INDEX, PromptBuilder, Turn

MEDIA_BY_GROUP = {
    "IMAGE_TEXT": "image",
    "IMAGE_TEXT_IN_CONTEXT": "image",
    "VIDEO_TEXT": "video",
    "TEXT_ONLY": "none",
}


@dataclass
class InstructionPair:
    """The text of one instruction-response pair and its image ids (a query or a context example)."""

    instruction: str
    answer: str
    image_ids: list[str]


@dataclass
class Record:
    """One instruction-response pair with its in-context examples, text only."""

    id: str
    media: str  # image | video | none
    query: InstructionPair
    context: list[InstructionPair]
    source: int = 0  # index of the dataset it came from
    part: int = 0  # which image file of that dataset holds its images


class MissingImage(KeyError):
    pass


class _ParquetImages:
    """Image lookup by id in one parquet file, one row group decoded at a time."""

    def __init__(self, path: Path, id_column: str, value_column: str, base64_values: bool):
        self.path = path
        self.value_column = value_column
        self.base64_values = base64_values
        self.where: dict[str, tuple[int, int]] = {}
        try:
            f = pq.ParquetFile(path)
            refuse_inflating_column(f, value_column, path)
            for rg in range(f.num_row_groups):
                ids = f.read_row_group(rg, columns=[id_column]).column(0).to_pylist()
                for i, image_id in enumerate(ids):
                    self.where[str(image_id)] = (rg, i)
        except (OSError, ValueError) as e:
            raise SyphusError(f"{path}: cannot read the images parquet ({str(e).splitlines()[0]})") from e
        self._file: pq.ParquetFile | None = f
        self._cached: tuple[int, list] | None = None

    def __getstate__(self) -> dict:
        # open file handles stay in the process that opened them (DataLoader workers reopen)
        return {**self.__dict__, "_file": None, "_cached": None}

    def get(self, image_id: str) -> bytes:
        if image_id not in self.where:
            raise MissingImage(image_id)
        rg, i = self.where[image_id]
        if self._cached is None or self._cached[0] != rg:
            if self._file is None:
                self._file = pq.ParquetFile(self.path)
            col = self._file.read_row_group(rg, columns=[self.value_column]).column(0).to_pylist()
            self._cached = (rg, col)
        value = self._cached[1][i]
        if value is None:
            raise MissingImage(image_id)
        if self.base64_values:
            return _base64_image(value, self.path, image_id)
        return bytes(value)


def _base64_image(value: str | bytes, path: Path, image_id: str) -> bytes:
    """Otter writes URL-safe base64, other tools the standard alphabet: accept both (an
    undecodable value is a bad image, counted like any other)."""
    try:
        return decode_base64(value, where=f"{path}: image '{image_id}'")
    except SyphusError as e:
        raise ValueError(str(e)) from e


class _JsonImages:
    """Image lookup by id in Otter's older ``{id: base64, ...}`` JSON, without loading it.

    These files run to several GB. One pass over a memory map records where each value's text
    starts and ends; a lookup reads just that slice. Chosen over converting the file into a
    parquet in the run folder because it writes nothing, needs no coordination between ranks
    (each process indexes the same read-only file, shared through the page cache), and keeps
    memory at one (offset, length) pair per image. The scan accepts exactly what the format
    is: one JSON object whose values are strings; anything else is a one-line error with the
    line where it goes wrong.
    """

    _SPACE = b" \t\r\n"

    def __init__(self, path: Path):
        self.path = path
        self.where: dict[str, tuple[int, int]] = {}
        self._map: mmap.mmap | None = None
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                raise SyphusError(f"{path}: empty file (expected an images JSON object {{id: base64}})")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                self._index(m)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def _fail(self, m: mmap.mmap, pos: int, what: str) -> SyphusError:
        line = 1 + sum(m[i : min(pos, i + (1 << 24))].count(b"\n") for i in range(0, pos, 1 << 24))
        return SyphusError(
            f"{self.path}: line {line}: {what} (expected an images JSON object {{id: base64}})"
        )

    def _skip_space(self, m: mmap.mmap, pos: int) -> int:
        while pos < len(m) and m[pos : pos + 1] in self._SPACE:
            pos += 1
        return pos

    def _string_end(self, m: mmap.mmap, start: int) -> int:
        """Position of the quote closing the string whose text begins at ``start``."""
        pos = start
        while True:
            q = m.find(b'"', pos)
            if q < 0:
                raise self._fail(m, len(m), "file ends inside a string (truncated?)")
            k = q
            while k > start and m[k - 1] == 0x5C:  # a quote after an odd run of backslashes is text
                k -= 1
            if (q - k) % 2 == 0:
                return q
            pos = q + 1

    def _index(self, m: mmap.mmap) -> None:
        pos = self._skip_space(m, 3 if m[:3] == b"\xef\xbb\xbf" else 0)  # a UTF-8 byte order mark
        if m[pos : pos + 1] != b"{":
            raise self._fail(m, pos, "does not start with '{'")
        pos = self._skip_space(m, pos + 1)
        if m[pos : pos + 1] == b"}":
            pos += 1
        else:
            while True:
                if m[pos : pos + 1] != b'"':
                    raise self._fail(m, pos, "expected an image id in double quotes")
                end = self._string_end(m, pos + 1)
                try:
                    key = json.loads(m[pos : end + 1])
                except (ValueError, UnicodeDecodeError) as e:
                    raise self._fail(m, pos, f"bad image id ({e})") from e
                pos = self._skip_space(m, end + 1)
                if m[pos : pos + 1] != b":":
                    raise self._fail(m, pos, f"expected ':' after image id '{key}'")
                pos = self._skip_space(m, pos + 1)
                if m[pos : pos + 1] != b'"':
                    raise self._fail(m, pos, f"image '{key}': value is not a base64 string")
                end = self._string_end(m, pos + 1)
                self.where[key] = (pos + 1, end - pos - 1)
                pos = self._skip_space(m, end + 1)
                sep = m[pos : pos + 1]
                if sep == b"}":
                    pos += 1
                    break
                if sep != b",":
                    raise self._fail(m, pos, f"expected ',' or '}}' after image '{key}'")
                pos = self._skip_space(m, pos + 1)
        if self._skip_space(m, pos) != len(m):
            raise self._fail(m, pos, "text after the closing '}'")

    def get(self, image_id: str) -> bytes:
        if image_id not in self.where:
            raise MissingImage(image_id)
        if self._map is None:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        start, length = self.where[image_id]
        text = self._map[start : start + length]
        if b"\\" in text:  # JSON escapes such as \/ (base64 itself has no backslash)
            try:
                text = json.loads(b'"' + text + b'"').encode("ascii")
            except (ValueError, UnicodeEncodeError) as e:
                raise ValueError(f"image '{image_id}': bad JSON string ({e})") from e
        return _base64_image(text, self.path, image_id)


def open_image_file(path: Path) -> _ParquetImages | _JsonImages:
    """An images file of a MIMIC-IT dataset, recognised by its content: parquet (``PAR1``) or
    Otter's older ``{id: base64}`` JSON."""
    if not path.is_file():
        raise SyphusError(f"{path}: images file not found")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PAR1"):
        id_column, value_column = images_parquet_columns(pq.read_schema(path), path)
        return _ParquetImages(path, id_column, value_column, base64_values=True)
    if head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"{" or not head.strip():
        return _JsonImages(path)
    raise SyphusError(f"{path}: not an images parquet or an images JSON object {{id: base64}}")


class ShardSource:
    """A directory written by ``syphus export shards``."""

    def __init__(self, root: str | Path, tasks: list[str] | None = None, langs: list[str] | None = None):
        self.root = Path(root)
        self.manifest = read_shard_manifest(self.root)
        self.tasks = set(tasks) if tasks else None
        self.langs = set(langs) if langs else None
        self._images: OrderedDict[int, _ParquetImages] = OrderedDict()

    def _keep(self, task: str, lang: str) -> bool:
        return (self.tasks is None or task in self.tasks) and (self.langs is None or lang in self.langs)

    def count(self) -> int:
        if self.tasks is None and self.langs is None:
            return self.manifest.rows
        n = 0
        for s in self.manifest.shards:
            t = pq.read_table(self.root / s.instructions, columns=["task", "lang"])
            n += sum(
                self._keep(a, b)
                for a, b in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True)
            )
        return n

    def records(self) -> Iterator[Record]:
        for part, s in enumerate(self.manifest.shards):
            f = pq.ParquetFile(self.root / s.instructions)
            for rg in range(f.num_row_groups):
                for row in f.read_row_group(rg).to_pylist():
                    if not self._keep(row["task"], row["lang"]):
                        continue
                    context = [
                        InstructionPair(c["instruction"], c["answer"], list(c["image_ids"] or []))
                        for c in (row.get("context") or [])
                    ]
                    yield Record(
                        id=row["id"],
                        media=row["media"],
                        query=InstructionPair(
                            row["instruction"], row["answer"], list(row["image_ids"] or [])
                        ),
                        context=context,
                        part=part,
                    )

    def image(self, part: int, image_id: str) -> bytes:
        if part not in self._images:
            path = self.root / self.manifest.shards[part].images
            self._images[part] = _ParquetImages(path, "image_id", "bytes", base64_values=False)
            while len(self._images) > 2:
                self._images.popitem(last=False)
        self._images.move_to_end(part)
        return self._images[part].get(image_id)


class MimicitSource:
    """Original MIMIC-IT files: instructions JSON, images (parquet or Otter's older JSON, both
    base64), optional train JSON.

    The instructions file is one JSON document, so it is parsed whole (as Otter does); the
    images file is indexed once here (a bad file is an error before training starts) and read
    one image or row group at a time.
    """

    def __init__(self, ds: MixDataset, media: str):
        self.media = media
        path = Path(ds.mimicit_path)
        _, records = read_instructions(path)
        self.data = {
            ins_id: InstructionPair(r.instruction, r.answer, list(r.image_ids))
            for ins_id, r in records.items()
        }
        # the YAML's train_config_path is Otter's name for the *_train.json context map
        context_map = read_context_map(ds.train_config_path) if ds.train_config_path else None
        self.related: dict[str, list[str]] = context_map or {}
        self.order = mimicit_order(list(self.data), context_map)
        self.images_path = Path(ds.images_path) if ds.images_path else None
        self._images = open_image_file(self.images_path) if self.images_path is not None else None
        self.path = path

    def count(self) -> int:
        return len(self.order)

    def records(self) -> Iterator[Record]:
        for ins_id in self.order:
            q = self.data.get(ins_id)
            if q is None:
                # A context-map id absent from the instructions: surfaces as a counted skip.
                yield Record(id=ins_id, media="missing", query=InstructionPair("", "", []), context=[])
                continue
            context = [self.data[c] for c in self.related.get(ins_id, []) if c in self.data]
            media = self.media if q.image_ids or self.media == "none" else "none"
            yield Record(id=ins_id, media=media, query=q, context=context)

    def image(self, part: int, image_id: str) -> bytes:
        if self._images is None:
            raise MissingImage(image_id)
        return self._images.get(image_id)


@dataclass
class StreamOptions:
    batch_size: int = 1
    seed: int = 0
    prompt_format: str = "otter"
    max_length: int = 2048
    resample_frames: int = 8
    max_context: int | None = None
    supervise_context: bool = True
    shuffle_buffer: int = 1024


@dataclass
class _Dataset:
    group: str
    name: str
    source: ShardSource | MimicitSource
    count: int
    num_samples: int
    full_passes: int = 0
    extra: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted positions

    @property
    def key(self) -> str:
        return f"{self.group}.{self.name}"


# Why a sample can be skipped (``SkipLog`` reasons); fixed, so ranks can sum their counts.
SKIP_REASONS = ("missing_instruction", "too_long", "missing_image", "corrupt_image")


@dataclass
class SkipLog:
    counts: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def add(self, reason: str, message: str) -> None:
        assert reason in SKIP_REASONS, reason
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.messages.append(message)


class MixStream(torch.utils.data.IterableDataset):
    """An endless, seeded stream of collated micro-batches for one rank.

    ``image_processor`` maps a list of PIL images to ``[N, C, H, W]``; ``tokenizer`` and
    ``special`` come from the model (see ``trainer.prompting.SpecialTokens``).
    """

    def __init__(
        self,
        mix: MixConfig,
        *,
        tokenizer,
        special,
        image_processor: Callable,
        options: StreamOptions | None = None,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ):
        super().__init__()
        self.options = options or StreamOptions()
        self.rank, self.world_size = rank, world_size
        self.start_batch = start_batch
        self.tokenizer, self.special, self.image_processor = tokenizer, special, image_processor
        self.builder = PromptBuilder(tokenizer, special, self.options.prompt_format)
        self.datasets: list[_Dataset] = []
        for group, name, ds in mix.datasets():
            if ds.shards_path:
                source: ShardSource | MimicitSource = ShardSource(ds.shards_path, ds.tasks, ds.langs)
            else:
                source = MimicitSource(ds, MEDIA_BY_GROUP[group])
            count = source.count()
            wanted = resolved_count(count, ds.num_samples)
            if count == 0 and wanted > 0:
                raise SyphusError(f"mix dataset {group}.{name}: no instructions to sample from")
            passes, extra = sample_positions(self.options.seed, name, count, ds.num_samples)
            self.datasets.append(_Dataset(group, name, source, count, wanted, passes, extra))
        if self.epoch_size == 0:
            raise SyphusError("the mix selects no samples (every dataset is empty)")

    @property
    def epoch_size(self) -> int:
        """Samples in one pass over the mix after ``num_samples`` sampling."""
        return sum(d.num_samples for d in self.datasets)

    @property
    def groups(self) -> list[str]:
        return sorted({d.group for d in self.datasets})

    # -- layer 1: the global record order --------------------------------------------------
    def _sampled(self, index: int) -> Iterator[Record]:
        """The dataset's sample in file order: every record ``full_passes`` times, then the
        records at the ``extra`` positions (the plan ``syphus mix`` writes)."""
        d = self.datasets[index]
        for _ in range(d.full_passes):
            for r in d.source.records():
                r.source = index
                yield r
        if len(d.extra):
            k = 0
            for pos, r in enumerate(d.source.records()):
                if pos == d.extra[k]:
                    r.source = index
                    yield r
                    k += 1
                    if k == len(d.extra):
                        break

    def epoch_records(self, epoch: int) -> Iterator[Record]:
        """One epoch of records in the global order shared by all ranks."""
        rng = random.Random(f"syphus-mix:{self.options.seed}:{epoch}")
        streams = [self._sampled(i) for i in range(len(self.datasets))]
        left = [d.num_samples for d in self.datasets]
        buffer: list[Record] = []
        size = max(1, self.options.shuffle_buffer)
        total = sum(left)
        while total:
            pick = rng.random() * total
            i = 0
            while pick >= left[i]:
                pick -= left[i]
                i += 1
            left[i] -= 1
            total -= 1
            buffer.append(next(streams[i]))
            if len(buffer) >= size:
                j = rng.randrange(len(buffer))
                buffer[j], buffer[-1] = buffer[-1], buffer[j]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def records(self) -> Iterator[Record]:
        epoch = 0
        while True:
            yield from self.epoch_records(epoch)
            epoch += 1

    # -- layer 2: this rank's micro-batches ------------------------------------------------
    def _owned_batches(self, worker: int, n_workers: int) -> Iterator[tuple[int, list[Record]]]:
        bs = self.options.batch_size
        chunk: list[Record] = []
        g = 0  # global micro-batch index
        for rec in self.records():
            chunk.append(rec)
            if len(chunk) < bs:
                continue
            if g % self.world_size == self.rank:
                k = g // self.world_size
                if k >= self.start_batch and k % n_workers == worker:
                    yield k, chunk
            chunk = []
            g += 1

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for k, records in self._owned_batches(worker, n_workers):
            yield self.make_batch(k, records)

    def make_batch(self, index: int, records: list[Record]) -> Batch:
        log = SkipLog()
        samples = []
        per_dataset: dict[str, dict[str, int]] = {}
        for rec in records:
            tally = per_dataset.setdefault(self.datasets[rec.source].key, {"drawn": 0})
            tally["drawn"] += 1
            before = dict(log.counts)
            s = self.encode(rec, log)
            if s is not None:
                samples.append(s)
            for reason, n in log.counts.items():
                if n != before.get(reason, 0):
                    tally[reason] = tally.get(reason, 0) + 1
        if not samples:
            ids = [self.special.bos_id if self.special.bos_id is not None else self.special.pad_id]
            samples = [EncodedSample(ids, [IGNORE_INDEX], None)]
        batch = collate(samples, self.special.pad_id)
        batch.index, batch.skipped, batch.warnings = index, log.counts, log.messages
        batch.per_dataset = per_dataset
        return batch

    # -- one record -> one encoded sample --------------------------------------------------
    def _turns(self, rec: Record) -> list[tuple[InstructionPair, int]]:
        context = rec.context
        if self.options.max_context is not None:
            context = context[: self.options.max_context]
        out = []
        for ex in [*context, rec.query]:
            if rec.media == "image":
                n = len(ex.image_ids)
            elif rec.media == "video":
                n = 1 if ex.image_ids else 0
            else:
                n = 0
            out.append((ex, n))
        return out

    def encode(self, rec: Record, log: SkipLog) -> EncodedSample | None:
        d = self.datasets[rec.source]
        where = f"{d.group}.{d.name} record {rec.id}"
        if rec.media == "missing":
            log.add(
                "missing_instruction",
                f"{where}: id in the context map (*_train.json) but not in the instructions file",
            )
            return None
        turns = self._turns(rec)
        opt = self.options
        while True:
            enc = self.builder.encode(
                [Turn(ex.instruction, ex.answer, n) for ex, n in turns],
                supervise_context=opt.supervise_context,
            )
            if len(enc.input_ids) <= opt.max_length or len(turns) == 1:
                break
            turns = turns[1:]  # drop the oldest in-context example first
        if len(enc.input_ids) > opt.max_length:
            enc.input_ids, enc.labels = enc.input_ids[: opt.max_length], enc.labels[: opt.max_length]
            if enc.n_supervised == 0:
                log.add("too_long", f"{where}: prompt longer than max_length={opt.max_length}")
                return None
        vision = None
        if any(n for _, n in turns):
            try:
                vision = self._vision(rec, turns)
            except MissingImage as e:
                log.add("missing_image", f"{where}: image id '{e.args[0]}' not found")
                return None
            except (OSError, ValueError, SyntaxError) as e:
                log.add("corrupt_image", f"{where}: image cannot be decoded ({type(e).__name__}: {e})")
                return None
        return EncodedSample(enc.input_ids, enc.labels, vision, group=d.group, dataset=d.name, id=rec.id)

    def _decode(self, rec: Record, image_id: str) -> Image.Image:
        raw = self.datasets[rec.source].source.image(rec.part, image_id)
        with Image.open(io.BytesIO(raw)) as im:
            return im.convert("RGB")

    def _vision(self, rec: Record, turns: list[tuple[InstructionPair, int]]) -> torch.Tensor:
        """``[T, F, C, H, W]``: one T slot per ``<image>`` token, frames on F for video."""
        slots: list[list[Image.Image]] = []
        for ex, n in turns:
            if n == 0:
                continue
            if rec.media == "video":
                picks = resample_frames(len(ex.image_ids), self.options.resample_frames)
                slots.append([self._decode(rec, ex.image_ids[i]) for i in picks])
            else:
                slots.extend([self._decode(rec, i)] for i in ex.image_ids)
        frames = max(len(s) for s in slots)
        flat = [im for s in slots for im in s]
        pixels = self.image_processor(flat)
        out = torch.zeros((len(slots), frames, *pixels.shape[1:]), dtype=pixels.dtype)
        pos = 0
        for t, s in enumerate(slots):
            out[t, : len(s)] = pixels[pos : pos + len(s)]
            pos += len(s)
        return out


class SkipGuard:
    """Stops training when a dataset loses more than ``max_fraction`` of its samples.

    While a run is in its first pass, a dataset fails as soon as its skips exceed the fraction
    of what one epoch draws from it on this rank (from then on the epoch cannot end below
    the limit), so a dataset whose every image is unreadable stops the run within a few
    percent of its samples instead of "training" on nothing; later, the running share decides.
    ``finish`` checks what the whole run drew, summed over ranks.
    """

    def __init__(self, datasets: list[_Dataset], max_fraction: float, world_size: int = 1):
        self.max_fraction = max_fraction
        self.keys = [d.key for d in datasets]
        self.epoch_share = {d.key: d.num_samples / max(1, world_size) for d in datasets}
        self.drawn = dict.fromkeys(self.keys, 0)
        self.reasons: dict[str, dict[str, int]] = {k: {} for k in self.keys}
        self.example: dict[str, str] = {}

    def skipped(self, key: str) -> int:
        return sum(self.reasons[key].values())

    def add(self, batch: Batch) -> None:
        for key, tally in batch.per_dataset.items():
            self.drawn[key] += tally["drawn"]
            for reason, n in tally.items():
                if reason != "drawn":
                    self.reasons[key][reason] = self.reasons[key].get(reason, 0) + n
            if key not in self.example and len(tally) > 1:
                self.example[key] = next((w for w in batch.warnings if w.startswith(key + " ")), "")
            if self.skipped(key) > self.max_fraction * max(self.drawn[key], self.epoch_share[key]):
                raise self._error(key, self.drawn[key], self.skipped(key), self.reasons[key])

    def finish(self) -> None:
        """The end-of-run check over every rank's counts (a collective when distributed)."""
        reasons = SKIP_REASONS
        counts = torch.tensor(
            [[self.drawn[k], *(self.reasons[k].get(r, 0) for r in reasons)] for k in self.keys],
            dtype=torch.float64,
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        for key, row in zip(self.keys, counts.tolist(), strict=True):
            drawn, skipped = int(row[0]), int(sum(row[1:]))
            if skipped > self.max_fraction * drawn:
                by = {r: int(n) for r, n in zip(reasons, row[1:], strict=True) if n}
                raise self._error(key, drawn, skipped, by)

    def _error(self, key: str, drawn: int, skipped: int, reasons: dict[str, int]) -> SyphusError:
        why = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
        example = self.example.get(key, "")
        return SyphusError(
            f"mix dataset {key}: {skipped} of {drawn} samples skipped ({why}), more than "
            f"max_skipped_fraction {self.max_fraction:g}"
            + (f"; first: {example}" if example else "")
            + "; fix the data or raise max_skipped_fraction in the training config"
        )


def resample_frames(n: int, k: int) -> list[int]:
    """``k`` frame indices spread evenly over ``n`` frames (repeats when ``n < k``)."""
    if n <= 0:
        return []
    if k <= 0:
        raise ValueError("resample_frames must be positive")
    return [int(round(x)) for x in np.linspace(0, n - 1, k)]
