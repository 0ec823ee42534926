"""TVC (TV captions): a TV clip's ordered moment descriptions (and subtitles) -> pairs about
plot, characters and intent.

Input: TVCaption release files as distributed (``tvc_train_release.jsonl``,
``tvc_val_release.jsonl``): one JSON object per line, one moment of a clip:
``{"vid_name", "clip_id", "ts": [start, end], "duration", "descs": [{"desc", "type",
"desc_id"}]}``. Lines are grouped by ``vid_name`` and ordered by ``ts``. A line without
descriptions (the public test release, ``tvc_test_public_release.jsonl``, has none) has nothing
to generate from: it is skipped and counted. Subtitles are used
when a TVQA ``tvqa_preprocessed_subtitles.jsonl`` file (``{"vid_name", "sub": [{"text",
"start", "end"}]}`` per line) is passed among the paths; files are read as streams.

Image ids: the clip is fed as ``frames`` evenly spaced frames: ``image_id_pattern`` formatted
with ``vid_name`` and ``frame`` (0 .. frames-1); default ``TVC_IMG_{vid_name}_{frame}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from schemas.annotations import TimedEvent, TvcLine, TvClipRecord, TvqaSubtitles
from schemas.errors import SyphusError
from syphus.tasks.base import Annotation, BaseTask, Merged, ReadNote, Skipped, TaskOptions
from syphus.tasks.dc import fmt_time
from syphus.tasks.readers import RepeatedRecords, check_paths, iter_jsonl, validate

# TVR/TVC clips come from six shows; The Big Bang Theory clips carry no show prefix.
SHOWS = {
    "friends": "Friends",
    "bbt": "The Big Bang Theory",
    "castle": "Castle",
    "grey": "Grey's Anatomy",
    "house": "House M.D.",
    "met": "How I Met Your Mother",
}


def show_of(vid_name: str) -> str:
    if re.match(r"s\d\d", vid_name):
        return SHOWS["bbt"]
    return SHOWS.get(vid_name.split("_", 1)[0], vid_name.split("_", 1)[0])


class TVCOptions(TaskOptions):
    frames: int = 8
    max_subtitles: int = 40


class TVCTask(BaseTask):
    name = "TVC"
    prompt_name = "tvc"
    default_image_id_pattern = "TVC_IMG_{vid_name}_{frame}"
    Options = TVCOptions

    def read(self, paths: list[Path]) -> Iterator[Annotation | ReadNote]:
        repeats = RepeatedRecords()
        clips: dict[str, list[TvcLine]] = {}
        sources: dict[str, str] = {}
        subs: dict[str, list[TimedEvent]] = {}
        lines_read = 0
        for path in check_paths(paths, self.name):
            for lineno, raw in iter_jsonl(path):
                where = f"{path}: line {lineno}"
                if isinstance(raw, dict) and "sub" in raw and "descs" not in raw:
                    s = validate(TvqaSubtitles, raw, where)
                    subs[s.vid_name] = [
                        TimedEvent(start=x.start, end=x.end, text=x.text.strip()) for x in s.sub
                    ]
                    continue
                if not isinstance(raw, dict):
                    raise SyphusError(f"{where}: expected a JSON object, found {type(raw).__name__}")
                line = validate(TvcLine, raw, where)
                lines_read += 1
                if not line.descs:
                    yield Skipped(
                        "no descriptions (e.g. a test-release line)", f"{where} (clip {line.vid_name!r})"
                    )
                    continue
                if repeats.repeated(raw):
                    yield Merged("exact duplicate line", where)
                    continue
                clips.setdefault(line.vid_name, []).append(line)
                sources.setdefault(line.vid_name, str(path))
        if not lines_read:
            raise SyphusError(f"task {self.name}: no TVC moments in {[str(p) for p in paths]}")
        for vid_name, lines in clips.items():
            lines.sort(key=lambda x: (x.ts[0], x.ts[1]))
            moments = []
            for line in lines:
                seen = set()
                for d in line.descs:
                    text = " ".join(d.desc.split())
                    if text.lower() not in seen:
                        seen.add(text.lower())
                        moments.append(TimedEvent(start=line.ts[0], end=line.ts[1], text=text))
            rec = TvClipRecord(
                vid_name=vid_name,
                show=show_of(vid_name),
                duration=next((x.duration for x in lines if x.duration), None),
                moments=moments,
                subtitles=subs.get(vid_name, [])[: self.options.max_subtitles],
            )
            yield Annotation(
                id=vid_name,
                image_ids=[
                    self.image_id(f"clip '{vid_name}'", vid_name=vid_name, frame=f)
                    for f in range(self.options.frames)
                ],
                data=rec,
                source_file=sources[vid_name],
            )

    def render_query(self, ann: Annotation) -> str:
        rec: TvClipRecord = ann.data
        length = f", {fmt_time(rec.duration)} seconds" if rec.duration else ""
        lines = [
            f"TV show: {rec.show} (clip {rec.vid_name}{length})",
            "What happens (start - end in seconds):",
        ]
        lines += [f"- {fmt_time(m.start)} - {fmt_time(m.end)}: {m.text}" for m in rec.moments]
        if rec.subtitles:
            lines.append("Subtitles:")
            lines += [f"- {fmt_time(s.start)}: {s.text}" for s in rec.subtitles]
        return "\n".join(lines)
