"""Pydantic models of the public datasets' own annotation formats, as distributed.

Two kinds of model live here: *file records* that mirror one element of a public file exactly
(unknown extra fields are allowed, because the public files carry more than we use), and
*task records* that gather what one generation request is about (an image with its captions
and boxes, a video with its events, ...). Readers in ``syphus/tasks`` validate the first and
build the second.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


def _id_text(v: Any) -> Any:
    """Public files give ids as strings or integers; either becomes a string. A float id must be
    whole and finite: NaN would otherwise become the id 'nan'."""
    if isinstance(v, bool):
        raise ValueError("must be a string or an integer id, not a boolean")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"must be a string or an integer id, not {v}")
        if not v.is_integer():
            raise ValueError(f"must be a string or an integer id, not the fraction {v}")
        return str(int(v))
    return v


# An identifier: a string, or an integer given as a number. Free text fields stay plain ``str``
# and refuse numbers: a caption given as 123 is a broken file, not a caption.
IdStr = Annotated[str, BeforeValidator(_id_text)]


class _Record(BaseModel):
    # NaN and infinity are not JSON, but Python's parser accepts them: refuse them in every number.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


def _nonblank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


# -- COCO (captions_*.json, instances_*.json) ----------------------------------------------


class CocoImage(_Record):
    """An element of ``images`` in a COCO annotation file."""

    id: int
    file_name: str
    width: int | None = None
    height: int | None = None


class CocoCaption(_Record):
    """An element of ``annotations`` in ``captions_*.json``."""

    id: int | None = None
    image_id: int
    caption: str

    _nb = field_validator("caption")(_nonblank)


class CocoInstance(_Record):
    """An element of ``annotations`` in ``instances_*.json``; ``bbox`` is [x, y, width, height]."""

    id: int | None = None
    image_id: int
    category_id: int
    bbox: list[float] = Field(min_length=4, max_length=4)
    iscrowd: int = 0


class CocoCategory(_Record):
    """An element of ``categories`` in ``instances_*.json``."""

    id: int
    name: str
    supercategory: str | None = None


class BoxedObject(BaseModel):
    """An object on an image: category name and box [x1, y1, x2, y2] normalised to 0..1."""

    name: str
    box: tuple[float, float, float, float]


class CocoImageRecord(BaseModel):
    """LA / CGD task record: one COCO image with its captions and object boxes."""

    image_id: int
    file_name: str
    width: int | None = None
    height: int | None = None
    captions: list[str]
    objects: list[BoxedObject] = []


class CocoPairRecord(BaseModel):
    """CGD task record: two similar COCO images."""

    first: CocoImageRecord
    second: CocoImageRecord
    shared_categories: list[str] = []


# -- Spot-the-Diff (data/annotations/{train,val,test}.json) --------------------------------


class SpotDiffRecord(_Record):
    """One element of a Spot-the-Diff annotation list: ``{"img_id": "57", "sentences": [...]}``.

    The images are ``{img_id}.png`` (before) and ``{img_id}_2.png`` (after). The public files
    hold records whose sentences are all blank (``[""]``): valid here, skipped by the reader.
    """

    img_id: IdStr
    sentences: list[str]

    @field_validator("img_id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _nonblank(v)


# -- ScanRefer (ScanRefer_filtered_{train,val}.json) ---------------------------------------


class ScanReferRecord(_Record):
    """One element of a ScanRefer file: one description of one object in a ScanNet scene."""

    scene_id: IdStr
    object_id: IdStr
    object_name: str
    ann_id: IdStr | None = None
    description: str

    _nb = field_validator("scene_id", "object_name", "description")(_nonblank)


class SceneObject(BaseModel):
    object_id: str
    name: str
    descriptions: list[str]


class SceneRecord(BaseModel):
    """SN task record: a ScanNet scene described through its objects."""

    scene_id: str
    objects: list[SceneObject]


# -- ActivityNet Captions (train.json, val_1.json, val_2.json) -----------------------------


class ActivityNetVideo(_Record):
    """The value for one video id in an ActivityNet Captions file.

    A pair may run backwards: the official ``train.json`` has two (``v_0bosp4-pyTM`` event 3,
    ``[61.29, 60.71]``, and ``v_rhOtqArO-3Y`` event 5); readers order each pair themselves.
    """

    duration: float = Field(gt=0)
    timestamps: list[list[float]]
    sentences: list[str]

    @model_validator(mode="after")
    def _aligned(self) -> ActivityNetVideo:
        if len(self.timestamps) != len(self.sentences):
            raise ValueError(
                f"{len(self.timestamps)} timestamps but {len(self.sentences)} sentences (must match)"
            )
        for i, ts in enumerate(self.timestamps):
            if len(ts) != 2:
                raise ValueError(f"timestamps[{i}] must be [start, end], found {len(ts)} numbers")
        return self


class TimedEvent(BaseModel):
    start: float
    end: float
    text: str


class VideoEventsRecord(BaseModel):
    """DC task record: a video with timestamped event captions."""

    video_id: str
    duration: float
    events: list[TimedEvent]


# -- TVCaption (tvc_{train,val}_release.jsonl) and TVQA subtitles --------------------------


class TvcDesc(_Record):
    desc: str
    type: str | None = None  # "v" (visual), "t" (subtitle-based) or "vt"
    desc_id: int | None = None

    _nb = field_validator("desc")(_nonblank)


class TvcLine(_Record):
    """One line of a TVC release file: one moment of a clip with its descriptions."""

    vid_name: IdStr
    clip_id: int | None = None
    ts: list[float] = Field(min_length=2, max_length=2)
    duration: float | None = None
    descs: list[TvcDesc] = []  # none in the test release: the reader skips such a line


class SubtitleLine(_Record):
    text: str
    start: float
    end: float


class TvqaSubtitles(_Record):
    """One line of ``tvqa_preprocessed_subtitles.jsonl``."""

    vid_name: IdStr
    sub: list[SubtitleLine]


class TvClipRecord(BaseModel):
    """TVC task record: a clip's moments in time order, with subtitles when available."""

    vid_name: str
    show: str
    duration: float | None = None
    moments: list[TimedEvent]
    subtitles: list[TimedEvent] = []


# -- VIST (sis/{train,val,test}.story-in-sequence.json) ------------------------------------


class VistImage(_Record):
    id: IdStr
    title: str = ""
    tags: str = ""
    text: str = ""
    datetaken: str | None = None


class VistAlbum(_Record):
    id: IdStr
    title: str = ""
    description: str = ""


class VistStorylet(_Record):
    """One element of ``annotations`` (each a one-element list) in a VIST SIS file."""

    story_id: IdStr
    album_id: IdStr
    photo_flickr_id: IdStr
    worker_arranged_photo_order: int
    text: str
    original_text: str | None = None
    storylet_id: IdStr | None = None


class StoryPhoto(BaseModel):
    photo_id: str
    title: str = ""
    tags: list[str] = []
    sentence: str


class StoryRecord(BaseModel):
    """VST task record: one story over an album's photos, in story order."""

    story_id: str
    album_id: str
    album_title: str = ""
    album_description: str = ""
    photos: list[StoryPhoto]


# -- Ego4D (v1/annotations/narration.json) --------------------------------------------------


class Ego4dNarration(_Record):
    timestamp_sec: float
    timestamp_frame: int | None = None
    narration_text: str
    annotation_uid: IdStr | None = None


class Ego4dSummary(_Record):
    summary_text: str
    start_sec: float | None = None
    end_sec: float | None = None


class Ego4dPass(_Record):
    narrations: list[Ego4dNarration] = []
    summaries: list[Ego4dSummary] = []


class Ego4dVideo(_Record):
    """The value for one video uid in ``narration.json``."""

    status: str | None = None
    narration_pass_1: Ego4dPass | None = None
    narration_pass_2: Ego4dPass | None = None


class EgoNarration(BaseModel):
    time: float
    frame: int | None = None
    text: str


class EgoWindowRecord(BaseModel):
    """E4D task record: a time window of one first-person video."""

    video_uid: str
    start: float
    end: float
    narrations: list[EgoNarration]
    summary: str = ""


# -- generated pairs to translate -----------------------------------------------------------


class SourcePair(BaseModel):
    id: str
    instruction: str
    answer: str
    image_ids: list[str] = []


class TranslationRecord(BaseModel):
    """translate task record: pairs in English to translate, in order."""

    pairs: list[SourcePair]
    source_task: str | None = None


class CustomRecord(BaseModel):
    """A custom YAML task's record: the annotation's fields as the YAML names them."""

    model_config = ConfigDict(extra="allow")

    fields: dict[str, Any]
