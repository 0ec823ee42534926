"""describe: a detailed description and grounded Q&A from an image's pixels alone.

For images with no annotation at all. ``--annotations`` names the images, one annotation each:

* a folder of image files (searched recursively, as ``syphus import images`` does): each file's
  image id is ``image_id_pattern`` over its path (default ``{stem}``, the id ``syphus import
  images DIR`` gives it), so import the folder into the corpus first; an image the corpus lacks
  is skipped and counted;
* a corpus folder (holding ``corpus.duckdb``): every image of that corpus.

The query text is the same for every image, so the request key depends on the pixels only: two
ids with identical bytes are asked once. The reply's description becomes one pair (its
instruction drawn from the prompt's ``instructions``), and each question-answer one more.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from schemas.errors import SyphusError
from syphus.tasks.base import Annotation, BaseTask, Pair, ResponseParseError

QUERY = "Describe the attached image and write questions and answers about it."
_DESCRIPTION_RE = re.compile(r"^\s*(?:\*\*|__)?description(?:\*\*|__)?\s*[:：]\s*(?:\*\*|__)?", re.IGNORECASE)
_QUESTION_RE = re.compile(r"^\s*(?:[-*•]\s+)?(?:\d{1,3}[.)]\s*)?(?:\*\*|__)?\s*(?:question|q)\s*\d*\s*(?:\*\*|__)?\s*[:：]",
                          re.IGNORECASE)  # fmt: skip


class ImageRecord(BaseModel):
    """One image to describe: its corpus id and where it was found."""

    image_id: str
    source: str


class DescribeTask(BaseTask):
    name = "describe"
    prompt_name = "describe"
    default_image_id_pattern = "{stem}"
    image_id_fields = ("stem", "name", "parent", "relpath")
    wants_images = True  # the pixels are all it has

    def read(self, paths: list[Path]) -> Iterator[Annotation]:
        from curation.store import DB_NAME

        for path in paths:
            path = Path(path)
            if not path.exists():
                raise SyphusError(f"{path}: not found (give a folder of images or a corpus folder)")
            if path.is_dir() and (path / DB_NAME).is_file():
                yield from self._corpus_images(path)
                continue
            yield from self._folder_images(path)

    def _corpus_images(self, path: Path) -> Iterator[Annotation]:
        from curation.store import Corpus

        with Corpus(path, create=False, read_only=True) as corpus:
            ids = [r[0] for r in corpus.con.execute("SELECT id FROM images ORDER BY id").fetchall()]
        if not ids:
            raise SyphusError(f"{path}: the corpus has no images to describe")
        for iid in ids:
            yield Annotation(id=iid, image_ids=[iid], data=ImageRecord(image_id=iid, source=str(path)),
                             source_file=str(path))  # fmt: skip

    def _folder_images(self, path: Path) -> Iterator[Annotation]:
        from curation.mimicit_io import image_id_for, iter_image_paths

        root = path if path.is_dir() else None
        for f in iter_image_paths(str(path)):
            iid = image_id_for(f, root, self.image_id_pattern)
            yield Annotation(id=iid, image_ids=[iid], data=ImageRecord(image_id=iid, source=str(f)),
                             source_file=str(f))  # fmt: skip

    def render_query(self, ann: Annotation) -> str:
        return QUERY  # the same for every image: the key is the pixels' hash

    def parse(self, text: str, ann: Annotation) -> list[Pair]:
        from syphus.tasks.parsing import clean_text, parse_pairs

        lines = (text or "").strip().splitlines()
        start = next((i for i, ln in enumerate(lines) if _DESCRIPTION_RE.match(ln)), None)
        pairs: list[Pair] = []
        rest = lines
        if start is not None:
            end = next((i for i in range(start + 1, len(lines)) if _QUESTION_RE.match(lines[i])), len(lines))
            body = clean_text(" ".join([_DESCRIPTION_RE.sub("", lines[start]), *lines[start + 1 : end]]))
            if len(body.split()) >= 8:
                choices = self.prompt.instructions or ["Describe this image in detail."]
                pairs.append(
                    Pair(instruction=choices[zlib.crc32(ann.id.encode()) % len(choices)], answer=body)
                )
            rest = lines[:start] + lines[end:]
        try:
            pairs += parse_pairs("\n".join(rest), min_pairs=1, max_pairs=self.options.max_pairs)
        except ResponseParseError:
            if not pairs:
                raise
        return pairs
