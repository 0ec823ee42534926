"""VST (visual story telling): an album's photos with titles, tags and story sentences ->
story-level pairs.

Input: VIST story-in-sequence files as distributed (``sis/train.story-in-sequence.json``,
``val...``, ``test...``): one JSON object with ``images`` (Flickr photos: ``id``, ``title``,
``tags``, ...), ``albums`` (``id``, ``title``, ``description``, ...) and ``annotations``, a
list of one-element lists, each a storylet ``{"story_id", "album_id", "photo_flickr_id",
"worker_arranged_photo_order", "text", "original_text", ...}``. Storylets are grouped by
``story_id`` and ordered by ``worker_arranged_photo_order``; one annotation per story.

Image ids: ``image_id_pattern`` formatted with ``photo_id`` (the Flickr id) and ``album_id``;
default ``{photo_id}``, the name ``syphus import images`` gives VIST's ``<photo id>.jpg`` files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from schemas.annotations import StoryPhoto, StoryRecord, VistAlbum, VistImage, VistStorylet
from schemas.errors import SyphusError
from syphus.tasks.base import Annotation, BaseTask, Merged, ReadNote
from syphus.tasks.readers import RepeatedRecords, check_paths, expect, load_json, validate


class VSTTask(BaseTask):
    name = "VST"
    prompt_name = "vst"
    default_image_id_pattern = "{photo_id}"

    def read(self, paths: list[Path]) -> Iterator[Annotation | ReadNote]:
        for path in check_paths(paths, self.name):
            data = expect(load_json(path), dict, str(path), "a VIST story-in-sequence object")
            if "annotations" not in data:
                raise SyphusError(f"{path}: field 'annotations' missing (not a VIST story-in-sequence file?)")
            images = {}
            for i, raw in enumerate(
                expect(data.get("images", []), list, f"{path}: field 'images'", "a list")
            ):
                img = validate(VistImage, raw, f"{path}: images[{i}]")
                images[img.id] = img
            albums = {}
            for i, raw in enumerate(
                expect(data.get("albums", []), list, f"{path}: field 'albums'", "a list")
            ):
                alb = validate(VistAlbum, raw, f"{path}: albums[{i}]")
                albums[alb.id] = alb
            stories: dict[str, list[VistStorylet]] = {}
            repeats = RepeatedRecords()
            for i, raw in enumerate(
                expect(data["annotations"], list, f"{path}: field 'annotations'", "a list")
            ):
                item = raw[0] if isinstance(raw, list) and len(raw) == 1 else raw
                s = validate(VistStorylet, item, f"{path}: annotations[{i}]")
                if repeats.repeated(item):
                    yield Merged("exact duplicate storylet", f"{path}: annotations[{i}]")
                    continue
                stories.setdefault(s.story_id, []).append(s)
            for story_id, storylets in stories.items():
                storylets.sort(key=lambda s: s.worker_arranged_photo_order)
                photos = []
                for s in storylets:
                    img = images.get(s.photo_flickr_id)
                    photos.append(
                        StoryPhoto(
                            photo_id=s.photo_flickr_id,
                            title=img.title.strip() if img else "",
                            tags=img.tags.split() if img else [],
                            sentence=" ".join((s.original_text or s.text).split()),
                        )
                    )
                album = albums.get(storylets[0].album_id)
                rec = StoryRecord(
                    story_id=story_id,
                    album_id=storylets[0].album_id,
                    album_title=album.title.strip() if album else "",
                    album_description=album.description.strip() if album else "",
                    photos=photos,
                )
                yield Annotation(
                    id=story_id,
                    image_ids=[
                        self.image_id(f"{path}: story {story_id}", photo_id=p.photo_id, album_id=rec.album_id)
                        for p in photos
                    ],
                    data=rec,
                    source_file=str(path),
                    extra={"album_id": rec.album_id},
                )

    def render_query(self, ann: Annotation) -> str:
        rec: StoryRecord = ann.data
        lines = [f"Album: {rec.album_title or '(untitled)'}"]
        if rec.album_description:
            lines.append(f"Album description: {rec.album_description}")
        lines.append("Photos in story order:")
        for n, p in enumerate(rec.photos, 1):
            facts = []
            if p.title:
                facts.append(f'title "{p.title}"')
            if p.tags:
                facts.append("tags: " + ", ".join(p.tags[:8]))
            head = f"{n}. " + ("; ".join(facts) + ". " if facts else "")
            lines.append(f"{head}Story: {p.sentence}")
        return "\n".join(lines)
