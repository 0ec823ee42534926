"""DC (dense captions): a video with timestamped event captions -> temporal questions and answers.

Input: ActivityNet Captions files as distributed (``train.json``, ``val_1.json``,
``val_2.json``): one JSON object ``{video_id: {"duration": s, "timestamps": [[start, end],
...], "sentences": [...]}}``; timestamps and sentences are parallel lists. A pair given as
``[end, start]`` (the official ``train.json`` has two) is read as the span it covers.

Image ids: the video is fed as ``frames`` evenly spaced frames: ``image_id_pattern``
formatted with ``video_id`` and ``frame`` (0 .. frames-1); default ``DC_IMG_{video_id}_{frame}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from schemas.annotations import ActivityNetVideo, TimedEvent, VideoEventsRecord
from syphus.tasks.base import Annotation, BaseTask, TaskOptions
from syphus.tasks.readers import check_paths, iter_json_container, validate


class DCOptions(TaskOptions):
    frames: int = 8


def fmt_time(t: float) -> str:
    return f"{t:.1f}"


class DCTask(BaseTask):
    name = "DC"
    prompt_name = "dc"
    default_image_id_pattern = "DC_IMG_{video_id}_{frame}"
    Options = DCOptions

    def read(self, paths: list[Path]) -> Iterator[Annotation]:
        for path in check_paths(paths, self.name):
            for video_id, raw, _ in iter_json_container(path, dict, "an object keyed by video id"):
                v = validate(ActivityNetVideo, raw, f"{path}: video '{video_id}'")
                events = sorted(
                    (
                        # a reversed pair (two in the official train.json) is the same span
                        TimedEvent(start=min(ts), end=max(ts), text=" ".join(s.split()))
                        for ts, s in zip(v.timestamps, v.sentences, strict=True)
                        if s.strip()
                    ),
                    key=lambda e: (e.start, e.end),
                )
                yield Annotation(
                    id=video_id,
                    image_ids=[
                        self.image_id(f"video '{video_id}'", video_id=video_id, frame=f)
                        for f in range(self.options.frames)
                    ],
                    data=VideoEventsRecord(video_id=video_id, duration=v.duration, events=events),
                    source_file=str(path),
                )

    def render_query(self, ann: Annotation) -> str:
        rec: VideoEventsRecord = ann.data
        lines = [
            f"Video length: {fmt_time(rec.duration)} seconds",
            "Events (start - end in seconds: caption):",
        ]
        lines += [f"- {fmt_time(e.start)} - {fmt_time(e.end)}: {e.text}" for e in rec.events]
        return "\n".join(lines)
