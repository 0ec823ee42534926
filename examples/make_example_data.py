"""Write the bundled example data under ``examples/data/`` (deterministic; rerun to rebuild).

Three public annotation formats, each with real or drawn images:

* COCO 2017 (``coco/annotations/captions_example.json`` + ``instances_example.json``) for the
  LA task: seven real photographs that ship inside scikit-image, with captions and boxes written
  for this project, plus drawn shape scenes whose captions and boxes are exact.
* ActivityNet Captions (``activitynet/captions_example.json``) for the DC task: short drawn clips
  stored as one image per frame (``frames/<video>_f000.png``) with timestamped sentences.
* Spot-the-Diff (``spot_the_diff/annotations/train.json``) for the SD task: drawn image pairs
  (``resized_images/<id>.png`` and ``<id>_2.png``) with sentences naming their real differences.

Usage: ``python examples/make_example_data.py [--out examples/data]``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data"

# COCO's own category ids where COCO has the category; ids above 100 are ours.
CATEGORIES = [
    (1, "person", "person"),
    (17, "cat", "animal"),
    (19, "horse", "animal"),
    (47, "cup", "kitchen"),
    (50, "spoon", "kitchen"),
    (67, "dining table", "furniture"),
    (101, "helmet", "accessory"),
    (102, "flag", "outdoor"),
    (103, "space shuttle model", "object"),
    (104, "saucer", "kitchen"),
    (105, "eye", "animal part"),
    (106, "nose", "animal part"),
    (107, "video camera", "electronic"),
    (108, "tripod", "object"),
    (109, "rocket", "vehicle"),
    (110, "launch tower", "outdoor"),
    (111, "coin", "object"),
    (121, "circle", "shape"),
    (122, "square", "shape"),
    (123, "triangle", "shape"),
]
CAT_ID = {name: cid for cid, name, _ in CATEGORIES}

# Boxes are [x, y, width, height] in pixels, checked by drawing them over each photograph.
PHOTOS = [
    {
        "id": 1,
        "name": "astronaut",
        "captions": [
            "A smiling woman astronaut in an orange flight suit poses for a portrait beside a white space helmet.",
            "Portrait of an astronaut in an orange suit with mission patches, an American flag behind her "
            "and a space shuttle model on the right.",
            "A woman with short light brown hair wearing an orange spacesuit with a metal neck ring.",
        ],
        "boxes": [
            ("person", [20, 15, 345, 497]),
            ("helmet", [275, 345, 237, 167]),
            ("flag", [0, 0, 95, 500]),
            ("space shuttle model", [350, 0, 125, 285]),
        ],
    },
    {
        "id": 2,
        "name": "coffee",
        "captions": [
            "A cup of espresso with crema on a red saucer with a silver spoon, on a wooden table.",
            "A small red-brown coffee cup, white inside, sits on a matching saucer on a rustic wooden table.",
            "Seen from above, an espresso cup and a teaspoon rest on a saucer on a worn wooden surface.",
        ],
        "boxes": [
            ("cup", [172, 18, 240, 287]),
            ("saucer", [75, 65, 405, 325]),
            ("spoon", [325, 65, 100, 260]),
            ("dining table", [0, 0, 600, 400]),
        ],
    },
    {
        "id": 3,
        "name": "chelsea",
        "captions": [
            "A close-up of a brown tabby cat's face with yellow-green eyes and a pink nose.",
            "A striped cat fills the picture, its whiskers spread out and its eyes looking to the left.",
        ],
        "boxes": [
            ("cat", [0, 0, 451, 300]),
            ("eye", [135, 85, 70, 60]),
            ("eye", [295, 105, 50, 55]),
            ("nose", [230, 215, 65, 50]),
        ],
    },
    {
        "id": 4,
        "name": "camera",
        "captions": [
            "A black and white photo of a man in a dark coat filming with a camera on a tripod in a grassy field.",
            "A cameraman looks through a camera mounted on a tripod, with buildings far behind him.",
        ],
        "boxes": [
            ("person", [0, 65, 330, 447]),
            ("video camera", [255, 138, 70, 57]),
            ("tripod", [228, 185, 182, 327]),
        ],
    },
    {
        "id": 5,
        "name": "rocket",
        "captions": [
            "A white rocket stands on its launch pad at dusk between tall lattice towers.",
            "A rocket on a launch pad under a deep blue evening sky, with bright lights glowing at its base.",
        ],
        "boxes": [
            ("rocket", [300, 125, 42, 285]),
            ("launch tower", [0, 0, 90, 427]),
            ("launch tower", [555, 0, 85, 427]),
        ],
    },
    {
        "id": 6,
        "name": "horse",
        "captions": [
            "A black silhouette of a horse standing in profile, facing right, on a white background.",
            "The solid black outline of a standing horse with its head raised and its tail hanging down.",
        ],
        "boxes": "horse_mask",
    },
    {
        "id": 7,
        "name": "coins",
        "captions": [
            "Twenty-four old coins laid out in four rows of six on a dark background.",
            "A black and white photo of ancient coins stamped with heads and figures, arranged in a grid.",
        ],
        "boxes": "coin_segments",
    },
]

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 200, 30),
    "purple": (140, 60, 170),
    "orange": (245, 130, 30),
}
SHAPES = ("circle", "square", "triangle")
NUMBER_WORDS = ["no", "one", "two", "three", "four", "five", "six"]


@dataclass
class Shape:
    kind: str
    colour: str
    cx: int
    cy: int
    r: int  # half the side of the square / radius of the circle / half the base of the triangle

    def polygon(self) -> list[tuple[float, float]]:
        if self.kind == "square":
            return [
                (self.cx - self.r, self.cy - self.r),
                (self.cx + self.r, self.cy - self.r),
                (self.cx + self.r, self.cy + self.r),
                (self.cx - self.r, self.cy + self.r),
            ]
        if self.kind == "triangle":
            # PIL fills a polygon including its edges, so the base ends one pixel in to fit the box
            bottom, right = self.cy + self.r - 1, self.cx + self.r - 1
            return [(self.cx, self.cy - self.r), (right, bottom), (self.cx - self.r, bottom)]
        n = 24
        return [
            (
                self.cx + self.r * math.cos(2 * math.pi * k / n),
                self.cy + self.r * math.sin(2 * math.pi * k / n),
            )
            for k in range(n)
        ]

    def box(self) -> list[int]:
        return [self.cx - self.r, self.cy - self.r, 2 * self.r, 2 * self.r]

    def area(self) -> float:
        """Pixel area of the drawn shape, as COCO counts a mask's area."""
        canvas = Image.new("RGB", (self.cx + self.r + 2, self.cy + self.r + 2), (0, 0, 0))
        self.draw(ImageDraw.Draw(canvas))
        return float(np.asarray(canvas).any(axis=2).sum())

    def draw(self, d: ImageDraw.ImageDraw) -> None:
        fill = COLOURS[self.colour]
        if self.kind == "circle":
            d.ellipse(
                [self.cx - self.r, self.cy - self.r, self.cx + self.r - 1, self.cy + self.r - 1], fill=fill
            )
        elif self.kind == "square":
            d.rectangle(
                [self.cx - self.r, self.cy - self.r, self.cx + self.r - 1, self.cy + self.r - 1], fill=fill
            )
        else:
            d.polygon(self.polygon(), fill=fill)

    def name(self) -> str:
        return f"{self.colour} {self.kind}"


def where(cx: float, cy: float, w: int, h: int) -> str:
    """A coarse position phrase ('top left', 'centre', ...) from the image's thirds."""
    col = ("left", "middle", "right")[min(2, int(3 * cx / w))]
    row = ("top", "middle", "bottom")[min(2, int(3 * cy / h))]
    if row == "middle" and col == "middle":
        return "centre"
    if row == "middle":
        return f"middle {col}"
    if col == "middle":
        return f"{row} middle"
    return f"{row} {col}"


def join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def place_shapes(rng: random.Random, n: int, w: int, h: int, rmin: int = 16, rmax: int = 30) -> list[Shape]:
    """Non-overlapping shapes with distinct (colour, kind) so every sentence names one object."""
    shapes: list[Shape] = []
    used: set[tuple[str, str]] = set()
    while len(shapes) < n:
        kind, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        if (colour, kind) in used:
            continue
        r = rng.randint(rmin, rmax)
        cx, cy = rng.randint(r + 4, w - r - 4), rng.randint(r + 4, h - r - 4)
        if all(math.hypot(cx - s.cx, cy - s.cy) > (r + s.r) * 1.5 for s in shapes):
            shapes.append(Shape(kind, colour, cx, cy, r))
            used.add((colour, kind))
    return shapes


def render(shapes: list[Shape], w: int, h: int, background=(250, 250, 245)) -> Image.Image:
    im = Image.new("RGB", (w, h), background)
    d = ImageDraw.Draw(im)
    for s in shapes:
        s.draw(d)
    return im


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def jpeg_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


def box_polygon(b: list[float]) -> list[float]:
    x, y, w, h = b
    return [x, y, x + w, y, x + w, y + h, x, y + h]


# -- COCO (LA) -----------------------------------------------------------------------------------


def horse_annotation(mask_black: np.ndarray) -> list[tuple[str, list[int], list[float], float]]:
    from skimage import measure

    ys, xs = np.nonzero(mask_black)
    box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
    contour = max(measure.find_contours(mask_black.astype(float), 0.5), key=len)
    poly = measure.approximate_polygon(contour, tolerance=1.5)
    seg = [round(float(v), 1) for yx in poly for v in (yx[1], yx[0])]
    return [("horse", box, seg, float(mask_black.sum()))]


def coin_annotations(gray: np.ndarray) -> list[tuple[str, list[int], list[float], float]]:
    """Boxes of the coins: subtract the smooth background (the lighting is uneven), threshold,
    clean up and label. The photo has 24 coins; anything else means the method broke."""
    from scipy import ndimage as ndi

    fg = gray.astype(float) - ndi.uniform_filter(gray.astype(float), 81) > 8
    fg = ndi.binary_fill_holes(ndi.binary_closing(ndi.binary_opening(fg, iterations=2), iterations=3))
    labels, _ = ndi.label(fg)
    out = []
    for sl in ndi.find_objects(labels):
        area = float((labels[sl] > 0).sum())
        if area < 500:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        box = [x0, y0, x1 - x0, y1 - y0]
        out.append(("coin", box, box_polygon(box), area))
    if len(out) != 24:
        raise RuntimeError(f"coins: found {len(out)} coins, expected 24")
    out.sort(key=lambda a: (a[1][1] // 60, a[1][0]))  # row by row, left to right
    return out


def write_coco(out: Path) -> dict[str, int]:
    import skimage.data

    img_dir = out / "coco" / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, captions, instances = [], [], []

    def add_image(image_id: int, file_name: str, data: bytes, w: int, h: int) -> None:
        (img_dir / file_name).write_bytes(data)
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h, "license": 1})

    def add_caption(image_id: int, text: str) -> None:
        captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": text})

    def add_instance(image_id: int, cat: str, box: list, seg: list, area: float) -> None:
        instances.append(
            {
                "id": len(instances) + 1,
                "image_id": image_id,
                "category_id": CAT_ID[cat],
                "bbox": [float(v) for v in box],
                "area": area,
                "iscrowd": 0,
                "segmentation": [seg],
            }
        )

    for photo in PHOTOS:
        arr = getattr(skimage.data, photo["name"])()
        if photo["boxes"] == "horse_mask":
            anns = horse_annotation(~arr)  # the horse is black (False) on white (True)
            im = Image.fromarray((arr * 255).astype(np.uint8))
            data, fname = png_bytes(im), f"{photo['name']}.png"
        else:
            im = Image.fromarray(arr)
            data, fname = jpeg_bytes(im), f"{photo['name']}.jpg"
            if photo["boxes"] == "coin_segments":
                anns = coin_annotations(arr)
            else:
                anns = [(cat, box, box_polygon(box), float(box[2] * box[3])) for cat, box in photo["boxes"]]
        add_image(photo["id"], fname, data, im.width, im.height)
        for c in photo["captions"]:
            add_caption(photo["id"], c)
        for cat, box, seg, area in anns:
            add_instance(photo["id"], cat, box, seg, area)

    rng = random.Random(20230603)
    w, h = 256, 192
    for k in range(6):
        image_id = 101 + k
        shapes = place_shapes(rng, 1 + k % 4, w, h)
        add_image(image_id, f"shapes_{k:03d}.png", png_bytes(render(shapes, w, h)), w, h)
        names = [f"{article(s.name())} {s.name()}" for s in shapes]
        places = [f"{article(s.name())} {s.name()} at the {where(s.cx, s.cy, w, h)}" for s in shapes]
        n = len(shapes)
        add_caption(image_id, f"{join_words(names).capitalize()} on a plain white background.")
        add_caption(image_id, f"{join_words(places).capitalize()}.")
        noun = "shape" if n == 1 else "shapes"
        add_caption(image_id, f"A drawing of {NUMBER_WORDS[n]} flat coloured {noun} with no other objects.")
        for s in shapes:
            add_instance(image_id, s.kind, s.box(), [round(v, 1) for p in s.polygon() for v in p], s.area())

    info = {
        "description": "Syphus example data: scikit-image photographs and drawn shape scenes",
        "version": "1.0",
        "year": 2024,
        "date_created": "2024-01-01",
    }
    licenses = [{"id": 1, "name": "see examples/README.md", "url": ""}]
    ann_dir = out / "coco" / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        ann_dir / "captions_example.json",
        {"info": info, "licenses": licenses, "images": images, "annotations": captions},
    )
    cats = [{"id": cid, "name": name, "supercategory": sup} for cid, name, sup in CATEGORIES]
    write_json(
        ann_dir / "instances_example.json",
        {"info": info, "licenses": licenses, "images": images, "annotations": instances, "categories": cats},
    )
    return {"coco_images": len(images), "coco_captions": len(captions), "coco_boxes": len(instances)}


# -- ActivityNet Captions (DC) ----------------------------------------------------------------------

FPS = 2  # frames per second of the drawn clips; a caption's [start, end) covers frames start*FPS..end*FPS


def ground_scene(w: int, h: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("RGB", (w, h), (200, 225, 250))  # sky
    d = ImageDraw.Draw(im)
    d.rectangle([0, int(h * 0.75), w - 1, h - 1], fill=(110, 170, 90))  # grass
    return im, d


def clip_ball_roll(w: int, h: int) -> tuple[list[Image.Image], list[tuple[float, float, str]]]:
    frames = []
    ground, r = int(h * 0.75), 12
    xs = [20, 60, 100, 140, 180, 200, 200, 200]  # rolls for frames 0-4, then stays
    for x in xs:
        im, d = ground_scene(w, h)
        d.ellipse([x - r, ground - 2 * r, x + r - 1, ground - 1], fill=COLOURS["red"])
        frames.append(im)
    captions = [
        (0.0, 2.5, "A red ball rolls along the grass from the left side toward the right."),
        (2.5, 4.0, "The ball stops near the right edge and stays still."),
    ]
    return frames, captions


def clip_square_drop(w: int, h: int) -> tuple[list[Image.Image], list[tuple[float, float, str]]]:
    frames = []
    ground, s = int(h * 0.75), 28
    tops = [4, 40, 76, ground - s, ground - s, ground - s, ground - s, ground - s]
    for k, top in enumerate(tops):
        im, d = ground_scene(w, h)
        d.rectangle([90, top, 90 + s - 1, top + s - 1], fill=COLOURS["blue"])
        if k >= 6:
            d.polygon([(170, ground - 30), (186, ground - 1), (154, ground - 1)], fill=COLOURS["yellow"])
        frames.append(im)
    captions = [
        (0.0, 2.0, "A blue square falls from the top of the picture down to the grass."),
        (2.0, 4.0, "The blue square rests on the grass without moving."),
        (3.0, 4.0, "A yellow triangle appears on the grass to the right of the square."),
    ]
    return frames, captions


def clip_colour_change(w: int, h: int) -> tuple[list[Image.Image], list[tuple[float, float, str]]]:
    frames = []
    order = ["green", "green", "green", "orange", "orange", "purple", "purple", "purple"]
    for colour in order:
        im = Image.new("RGB", (w, h), (245, 245, 245))
        d = ImageDraw.Draw(im)
        d.ellipse([w // 2 - 30, h // 2 - 30, w // 2 + 29, h // 2 + 29], fill=COLOURS[colour])
        frames.append(im)
    captions = [
        (0.0, 1.5, "A green circle sits in the middle of a light grey picture."),
        (1.5, 2.5, "The circle turns orange."),
        (2.5, 4.0, "The circle turns purple and stays that colour until the end."),
    ]
    return frames, captions


def write_activitynet(out: Path) -> dict[str, int]:
    root = out / "activitynet"
    frame_dir = root / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    w, h = 240, 160
    clips = {
        "v_syphusball01": clip_ball_roll(w, h),
        "v_syphusdrop02": clip_square_drop(w, h),
        "v_syphuscolr03": clip_colour_change(w, h),
    }
    ann, n_frames = {}, 0
    for vid, (frames, caps) in clips.items():
        for k, im in enumerate(frames):
            (frame_dir / f"{vid}_f{k:03d}.png").write_bytes(png_bytes(im))
        n_frames += len(frames)
        ann[vid] = {
            "duration": len(frames) / FPS,
            "timestamps": [[a, b] for a, b, _ in caps],
            "sentences": [s for _, _, s in caps],
        }
    write_json(root / "captions_example.json", ann)
    return {"dc_videos": len(clips), "dc_frames": n_frames}


# -- Spot-the-Diff (SD) -----------------------------------------------------------------------------


def write_spot_the_diff(out: Path) -> dict[str, int]:
    root = out / "spot_the_diff"
    img_dir = root / "resized_images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    w, h = 240, 180
    records = []
    edits = ["remove", "add", "recolour", "move", "remove_add"]
    for k, edit in enumerate(edits):
        img_id = str(1001 + k)
        before = place_shapes(rng, 3, w, h, 14, 24)
        after = [Shape(s.kind, s.colour, s.cx, s.cy, s.r) for s in before]
        sentences = []
        if edit in ("remove", "remove_add"):
            gone = after.pop(0)
            sentences.append(f"the {gone.name()} at the {where(gone.cx, gone.cy, w, h)} is gone")
        if edit in ("add", "remove_add"):
            new = extra_shape(rng, before + after, w, h)
            after.append(new)
            sentences.append(
                f"there is now {article(new.name())} {new.name()} at the {where(new.cx, new.cy, w, h)}"
            )
        if edit == "recolour":
            s = after[1]
            taken = {(o.colour, o.kind) for o in before}
            colour = next(c for c in COLOURS if c != s.colour and (c, s.kind) not in taken)
            sentences.append(f"the {s.name()} has turned {colour}")
            after[1] = Shape(s.kind, colour, s.cx, s.cy, s.r)
        if edit == "move":
            s = after[2]
            moved = free_spot(rng, s, before, w, h)
            after[2] = moved
            sentences.append(
                f"the {s.name()} has moved from the {where(s.cx, s.cy, w, h)} to the {where(moved.cx, moved.cy, w, h)}"
            )
        (img_dir / f"{img_id}.png").write_bytes(png_bytes(render(before, w, h)))
        (img_dir / f"{img_id}_2.png").write_bytes(png_bytes(render(after, w, h)))
        records.append({"img_id": img_id, "sentences": sentences})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    write_json(root / "annotations" / "train.json", records)
    return {"sd_pairs": len(records)}


def extra_shape(rng: random.Random, existing: list[Shape], w: int, h: int) -> Shape:
    taken = {(s.colour, s.kind) for s in existing}
    while True:
        kind, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        r = rng.randint(14, 24)
        cx, cy = rng.randint(r + 4, w - r - 4), rng.randint(r + 4, h - r - 4)
        if (colour, kind) not in taken and all(
            math.hypot(cx - s.cx, cy - s.cy) > (r + s.r) * 1.5 for s in existing
        ):
            return Shape(kind, colour, cx, cy, r)


def free_spot(rng: random.Random, s: Shape, existing: list[Shape], w: int, h: int) -> Shape:
    """The same shape somewhere clearly elsewhere (a different third of the picture)."""
    while True:
        cx, cy = rng.randint(s.r + 4, w - s.r - 4), rng.randint(s.r + 4, h - s.r - 4)
        if where(cx, cy, w, h) == where(s.cx, s.cy, w, h):
            continue
        if all(math.hypot(cx - o.cx, cy - o.cy) > (s.r + o.r) * 1.5 for o in existing if o is not s):
            return Shape(s.kind, s.colour, cx, cy, s.r)


# -- driver -----------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def make_example_data(out: Path = DEFAULT_OUT) -> dict[str, int]:
    """Rebuild ``out`` from scratch and return counts of what was written."""
    out = Path(out)
    for sub in ("coco", "activitynet", "spot_the_diff"):
        shutil.rmtree(out / sub, ignore_errors=True)
    counts = {}
    counts.update(write_coco(out))
    counts.update(write_activitynet(out))
    counts.update(write_spot_the_diff(out))
    counts["bytes"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder to (re)write (default: examples/data)"
    )
    args = p.parse_args()
    counts = make_example_data(args.out)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
