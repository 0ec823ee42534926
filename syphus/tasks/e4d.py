"""E4D (Ego4D): timestamped first-person narrations -> assistant-style pairs ("Where did I put
my keys?").

Input: Ego4D ``narration.json`` as distributed: ``{video_uid: {"status", "narration_pass_1":
{"narrations": [{"timestamp_sec", "timestamp_frame", "narration_text", "annotation_uid"}],
"summaries": [{"summary_text", "start_sec", "end_sec"}]}, "narration_pass_2": {...}}}``.
Narrations of one pass (``narration_pass``) are cut into windows of ``window_sec`` seconds;
windows with fewer than ``min_narrations`` are skipped. Narrator tags are rewritten for the
LLM: ``#C C`` -> ``C`` (the camera wearer), ``#O`` dropped, ``#unsure`` -> ``something``.

Image ids: up to ``frames`` narrations spread over the window give one frame each:
``image_id_pattern`` formatted with ``video_uid`` and ``frame`` (the narration's
``timestamp_frame``, or its time x 30 fps when absent); default ``E4D_IMG_{video_uid}_{frame}``.
The annotation id is ``<video_uid>_<window start second>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from schemas.annotations import Ego4dPass, Ego4dVideo, EgoNarration, EgoWindowRecord
from schemas.errors import SyphusError
from syphus.tasks.base import Annotation, BaseTask, TaskOptions
from syphus.tasks.dc import fmt_time
from syphus.tasks.readers import check_paths, iter_json_container, validate


class E4DOptions(TaskOptions):
    narration_pass: int = 1
    window_sec: float = 60.0
    min_narrations: int = 4
    frames: int = 8


def clean_narration(text: str) -> str:
    t = re.sub(r"#C\s+C\b", "C", text)
    t = re.sub(r"#O\s+", "", t)
    t = re.sub(r"#unsure", "something", t, flags=re.IGNORECASE)
    t = re.sub(r"#\w+", "", t)
    t = " ".join(t.split())
    if t and t[-1] not in ".!?":
        t += "."
    return t[:1].upper() + t[1:] if t else t


class E4DTask(BaseTask):
    name = "E4D"
    prompt_name = "e4d"
    default_image_id_pattern = "E4D_IMG_{video_uid}_{frame}"
    Options = E4DOptions

    def read(self, paths: list[Path]) -> Iterator[Annotation]:
        pass_key = f"narration_pass_{self.options.narration_pass}"
        for path in check_paths(paths, self.name):
            for video_uid, raw, _ in iter_json_container(path, dict, "an object keyed by video uid"):
                if video_uid == "videos" and isinstance(raw, list):
                    raise SyphusError(f"{path}: this is Ego4D metadata (ego4d.json), not narration.json")
                v = validate(Ego4dVideo, raw, f"{path}: video '{video_uid}'")
                npass: Ego4dPass | None = getattr(v, pass_key)
                if npass is None or not npass.narrations:
                    continue
                yield from self._windows(path, video_uid, npass)

    def _windows(self, path: Path, video_uid: str, npass: Ego4dPass) -> Iterator[Annotation]:
        w = self.options.window_sec
        items = sorted(npass.narrations, key=lambda n: n.timestamp_sec)
        windows: dict[int, list[EgoNarration]] = {}
        for n in items:
            text = clean_narration(n.narration_text)
            if text:
                windows.setdefault(int(n.timestamp_sec // w), []).append(
                    EgoNarration(time=n.timestamp_sec, frame=n.timestamp_frame, text=text)
                )
        for k, narrs in sorted(windows.items()):
            if len(narrs) < self.options.min_narrations:
                continue
            start, end = k * w, (k + 1) * w
            summary = " ".join(
                clean_narration(s.summary_text)
                for s in npass.summaries
                if s.start_sec is not None
                and s.end_sec is not None
                and s.start_sec < end
                and s.end_sec > start
            )
            rec = EgoWindowRecord(
                video_uid=video_uid, start=start, end=end, narrations=narrs, summary=summary
            )
            step = max(1, len(narrs) / self.options.frames)
            picks = [narrs[int(i * step)] for i in range(min(self.options.frames, len(narrs)))]
            yield Annotation(
                id=f"{video_uid}_{int(start)}",
                image_ids=[
                    self.image_id(
                        f"{path}: video '{video_uid}'",
                        video_uid=video_uid,
                        frame=n.frame if n.frame is not None else round(n.time * 30),
                    )
                    for n in picks
                ],
                data=rec,
                source_file=str(path),
            )

    def render_query(self, ann: Annotation) -> str:
        rec: EgoWindowRecord = ann.data
        lines = [
            f"First-person video, {fmt_time(rec.start)} - {fmt_time(rec.end)} seconds. C is the camera wearer."
        ]
        if rec.summary:
            lines.append(f"Summary: {rec.summary}")
        lines.append("Narrations (time in seconds: what happened):")
        lines += [f"- {fmt_time(n.time)}: {n.text}" for n in rec.narrations]
        return "\n".join(lines)
