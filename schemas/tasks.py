"""Facts about the MIMIC-IT scene types shared by every stage."""

from __future__ import annotations

from typing import Literal

Media = Literal["image", "video", "none"]

# How a task's images are fed to the model: "video" means the image ids of one sample are
# frames of one clip (Otter's F axis); "image" means separate images (the T axis).
TASK_MEDIA: dict[str, Media] = {
    "LA": "image",
    "CGD": "image",
    "SD": "image",
    "SN": "video",
    "DC": "video",
    "TVC": "video",
    "VST": "image",
    "E4D": "video",
}


def media_of_task(task: str) -> Media:
    base = task.split("_", 1)[0].upper()
    return TASK_MEDIA.get(base, "image")
