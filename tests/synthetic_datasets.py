"""Tiny synthetic benchmark datasets, written by the tests themselves (no downloads).

- :func:`make_refer_dataset`: REFER layout (``<root>/<dataset>/refs(<split_by>).p`` pickle +
  ``instances.json`` with polygon, uncompressed-RLE and compressed-RLE annotations + JPEG/PNG images
  under ``<root>/images/mscoco/images/train2014``).
- :func:`make_phrasecut_dataset`: VGPhraseCut v0 layout (``<root>/VGPhraseCut_v0/refer_<split>.json``,
  ``image_data_split.json``, ``images/<id>.jpg``).
- :class:`FakeSegmenter`: a model-free stand-in for the segmenter (``set_image`` / ``segment``).

Both return the expected samples per split, in loader order, with hand-built ground-truth masks:
every shape is an axis-aligned rectangle, and a pycocotools polygon rectangle with corners
(x0, y0)-(x1, y1) covers exactly rows y0..y1-1 and columns x0..x1-1.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ros2_iterprime.errors import InvalidInputError

W, H = 64, 48


@dataclass
class Expected:
    sample_id: str
    sentence: str
    image: str  # file name
    mask: np.ndarray  # (H, W) bool


def rect_mask(x0: int, y0: int, x1: int, y1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rect_poly(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major run lengths, starting with a run of zeros)."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, prev, run = [], 0, 0
    for v in flat:
        if v != prev:
            counts.append(run)
            run, prev = 0, v
        run += 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in enc["size"]], "counts": enc["counts"].decode("ascii")}


def write_image(path: Path, seed: int, w: int = W, h: int = H) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    arr[h // 4: h // 2, w // 4: w // 2] = (220, 30, 30)  # a red block, for a little structure
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_refer_dataset(root: str | Path, dataset: str = "refcoco", split_by: str = "unc",
                       splits: tuple[str, ...] = ("val", "testA", "testB"),
                       n_extra_images: int = 0, sentences_per_extra: int = 3) -> dict[str, list[Expected]]:
    """Write a REFER-format dataset under ``root``; return {split: [Expected, ...]} in loader order.

    Core content (split s0 = splits[0], s1 = splits[1], s2 = splits[-1]):
      image 1 (JPEG): ref 0 (s0, 2 sentences) overlapping two-part polygon; ref 1 (s0) uncompressed RLE
      image 2 (PNG):  ref 2 (s0, 2 sentences) compressed RLE; ref 3 (s0) polygon whose first part has
                      only 2 points (must be ignored, not read as a box)
      image 3: ref 4 (s1, 2 sentences); image 4: ref 5 (s2); ref 6 on image 1 is ``train`` (excluded)
    ``n_extra_images`` more JPEG images in s0, each with one ref of ``sentences_per_extra`` sentences.
    """
    root = Path(root)
    s0, s1, s2 = splits[0], splits[1] if len(splits) > 1 else splits[0], splits[-1]
    img_dir = root / "images" / "mscoco" / "images" / "train2014"
    images, anns, refs = [], [], []
    expected: dict[str, list[Expected]] = {}

    def add_image(image_id: int, ext: str = "jpg") -> str:
        fname = f"COCO_train2014_{image_id:012d}.{ext}"
        write_image(img_dir / fname, seed=image_id)
        images.append({"id": image_id, "file_name": fname, "height": H, "width": W})
        return fname

    sent_counter = [0]

    def add_ref(ref_id, ann_id, image_id, fname, split, sentences, mask, cat=1):
        sents = []
        for text in sentences:
            sid = sent_counter[0]
            sent_counter[0] += 1
            sents.append({"tokens": text.lower().split(), "raw": text, "sent_id": sid,
                          "sent": text.lower()})
            expected.setdefault(split, []).append(
                Expected(f"r{ref_id}_s{sid}", text.lower(), fname, mask))
        refs.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split,
                     "sentences": sents, "sent_ids": [s["sent_id"] for s in sents],
                     "file_name": fname.rsplit(".", 1)[0] + f"_{ann_id}.jpg", "category_id": cat})

    f1 = add_image(1, "jpg")
    f2 = add_image(2, "png")
    f3 = add_image(3, "jpg")
    f4 = add_image(4, "jpg")

    # ref 0: two overlapping polygon parts (a pixel in both must still be True, not 2)
    m0 = rect_mask(4, 4, 20, 20) | rect_mask(12, 12, 30, 30)
    anns.append({"id": 101, "image_id": 1, "category_id": 1, "iscrowd": 0,
                 "segmentation": [rect_poly(4, 4, 20, 20), rect_poly(12, 12, 30, 30)],
                 "area": float(m0.sum()), "bbox": [4, 4, 26, 26]})
    add_ref(0, 101, 1, f1, s0, ["The Left Square", "square on top left"], m0)
    # ref 1: uncompressed RLE
    m1 = rect_mask(40, 30, 60, 40)
    anns.append({"id": 102, "image_id": 1, "category_id": 2, "iscrowd": 1,
                 "segmentation": uncompressed_rle(m1), "area": float(m1.sum()), "bbox": [40, 30, 20, 10]})
    add_ref(1, 102, 1, f1, s0, ["bottom right block"], m1, cat=2)
    # ref 2: compressed RLE (counts as str, as in a JSON file)
    m2 = rect_mask(10, 20, 50, 44)
    anns.append({"id": 201, "image_id": 2, "category_id": 1, "iscrowd": 1,
                 "segmentation": compressed_rle(m2), "area": float(m2.sum()), "bbox": [10, 20, 40, 24]})
    add_ref(2, 201, 2, f2, s0, ["big bottom thing", "wide box"], m2)
    # ref 3: a degenerate 2-point part first, then a real rectangle
    m3 = rect_mask(50, 2, 62, 12)
    anns.append({"id": 202, "image_id": 2, "category_id": 1, "iscrowd": 0,
                 "segmentation": [[1, 1, 5, 5], rect_poly(50, 2, 62, 12)],
                 "area": float(m3.sum()), "bbox": [50, 2, 12, 10]})
    add_ref(3, 202, 2, f2, s0, ["small top right box"], m3)
    # refs 4, 5 in the other splits
    m4 = rect_mask(0, 0, 32, 24)
    anns.append({"id": 301, "image_id": 3, "category_id": 1, "iscrowd": 0,
                 "segmentation": [rect_poly(0, 0, 32, 24)], "area": float(m4.sum()), "bbox": [0, 0, 32, 24]})
    add_ref(4, 301, 3, f3, s1, ["person on the left", "man"], m4)
    m5 = rect_mask(32, 24, 64, 48)
    anns.append({"id": 401, "image_id": 4, "category_id": 1, "iscrowd": 0,
                 "segmentation": [rect_poly(32, 24, 64, 48)], "area": float(m5.sum()), "bbox": [32, 24, 32, 24]})
    add_ref(5, 401, 4, f4, s2, ["woman right"], m5)
    # ref 6: train split, must not appear in any evaluation split
    refs.append({"ref_id": 6, "ann_id": 101, "image_id": 1, "split": "train",
                 "sentences": [{"tokens": ["x"], "raw": "x", "sent_id": 999, "sent": "x"}],
                 "sent_ids": [999], "file_name": "x.jpg", "category_id": 1})

    for k in range(n_extra_images):
        image_id = 1000 + k
        fname = add_image(image_id, "jpg")
        x0, y0 = 2 + (k * 7) % 30, 2 + (k * 5) % 20
        m = rect_mask(x0, y0, x0 + 20, y0 + 16)
        ann_id = 5000 + k
        anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                     "segmentation": [rect_poly(x0, y0, x0 + 20, y0 + 16)], "area": float(m.sum()),
                     "bbox": [x0, y0, 20, 16]})
        add_ref(100 + k, ann_id, image_id, fname, s0,
                [f"object number {k} sentence {j}" for j in range(sentences_per_extra)], m)

    ds = root / dataset
    ds.mkdir(parents=True, exist_ok=True)
    with open(ds / f"refs({split_by}).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    with open(ds / "instances.json", "w") as f:
        json.dump({"images": images, "annotations": anns,
                   "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "box"}]}, f)
    return expected


def _pc_poly(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def make_phrasecut_dataset(root: str | Path) -> dict[str, list[Expected]]:
    """Write a VGPhraseCut-v0-format dataset under ``root``; return {split: [Expected, ...]}.

    Image 11 is listed in image_data_split.json; image 12 is not (its size comes from the file).
    """
    d = Path(root) / "VGPhraseCut_v0"
    (d / "images").mkdir(parents=True, exist_ok=True)
    for image_id in (11, 12, 13):
        write_image(d / "images" / f"{image_id}.jpg", seed=image_id)
    info = [{"image_id": 11, "height": H, "width": W, "split": "val"},
            {"image_id": 13, "height": H, "width": W, "split": "test"}]
    expected: dict[str, list[Expected]] = {}
    tasks: dict[str, list[dict]] = {"val": [], "test": [], "miniv": []}

    def add(split, task_id, image_id, phrase, instances, mask):
        tasks[split].append({"task_id": task_id, "image_id": image_id, "phrase": phrase,
                             "Polygons": instances, "instance_boxes": [], "ann_ids": [1],
                             "phrase_structure": {}})
        expected.setdefault(split, []).append(Expected(task_id, phrase, f"{image_id}.jpg", mask))

    # two instances -> union
    add("val", "11__0", 11, "red boxes",
        [[_pc_poly(2, 2, 10, 8)], [_pc_poly(20, 20, 30, 30)]],
        rect_mask(2, 2, 10, 8) | rect_mask(20, 20, 30, 30))
    # one instance made of two overlapping polygons
    add("val", "11__1", 11, "big square",
        [[_pc_poly(30, 10, 50, 30), _pc_poly(40, 20, 60, 40)]],
        rect_mask(30, 10, 50, 30) | rect_mask(40, 20, 60, 40))
    # image 12: size not in image_data_split.json
    add("val", "12__0", 12, "left half", [[_pc_poly(0, 0, 32, 48)]], rect_mask(0, 0, 32, 48))
    add("test", "13__0", 13, "top strip", [[_pc_poly(0, 0, 64, 8)]], rect_mask(0, 0, 64, 8))
    add("test", "13__1", 13, "bottom strip", [[_pc_poly(0, 40, 64, 48)]], rect_mask(0, 40, 64, 48))
    add("miniv", "11__2", 11, "corner", [[_pc_poly(56, 40, 64, 48)]], rect_mask(56, 40, 64, 48))
    for split, ts in tasks.items():
        with open(d / f"refer_{split}.json", "w") as f:
            json.dump(ts, f)
    with open(d / "image_data_split.json", "w") as f:
        json.dump(info, f)
    return expected


# ------------------------------------------------------------------------ fake segmenter


@dataclass
class FakeResult:
    mask: np.ndarray
    found: bool = True
    score: float = 1.5
    rounds: int = 1
    primary_word: str | None = None


class FakeSegmenter:
    """Predicts a box whose size depends on the sentence and the overrides; counts calls."""

    def __init__(self, stop_after: int | None = None, empty_for: str = "bottom"):
        self.image = None
        self.set_image_calls = 0
        self.segment_calls = []
        self.stop_after = stop_after
        self.empty_for = empty_for

    def set_image(self, rgb):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        self.image = rgb
        self.set_image_calls += 1

    def segment(self, sentence, **kw):
        if self.stop_after is not None and len(self.segment_calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.segment_calls.append((sentence, kw))
        if not sentence.strip() or sentence == "raise":
            raise InvalidInputError("empty expression")
        h, w = self.image.shape[:2]
        m = np.zeros((h, w), bool)
        if self.empty_for not in sentence:
            k = 4 + len(sentence) % 7 + 3 * kw.get("pwem_mode", 0) + kw.get("iterations", 1)
            m[4:4 + k, 4:4 + 2 * k] = True
        return FakeResult(mask=m, found=bool(m.any()), rounds=kw.get("iterations", 1))
