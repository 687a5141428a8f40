"""Loaders for the referring-segmentation benchmarks: RefCOCO / RefCOCO+ / RefCOCOg and PhraseCut.

No dependency on the old ``refer.py``: annotations are read directly and masks are rasterised with
pycocotools. Every sentence (expression) is one :class:`Sample`; its ground truth is computed lazily
(``sample.gt_mask()``) at the original image resolution.

Layouts (``data_root`` is the directory the user passes as ``--data-root``)::

    REFER (refcoco, refcoco+, refcocog)
        DATA_ROOT/<dataset>/refs(<split_by>).p       # pickle, e.g. refcoco/refs(unc).p
        DATA_ROOT/<dataset>/instances.json           # COCO-style images + annotations
        DATA_ROOT/images/mscoco/images/train2014/    # COCO train2014 images (override: image_dir)

    PhraseCut (VGPhraseCut v0)
        DATA_ROOT/VGPhraseCut_v0/refer_<split>.json  # (DATA_ROOT itself, DATA_ROOT/data/VGPhraseCut_v0
                                                     #  or DATA_ROOT/phrasecut also work)
        DATA_ROOT/VGPhraseCut_v0/image_data_split.json   # optional (or image_data_split3000.json):
                                                         # image sizes, else read from the image
        DATA_ROOT/VGPhraseCut_v0/images/<image_id>.jpg   # Visual Genome images (override: image_dir)

Security: ``refs(*).p`` is a Python pickle, and unpickling can execute code. It is only ever loaded
from the path the user points to (``data_root``); never point ``--data-root`` at data you do not trust.
"""
from __future__ import annotations

import json
import pickle
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import IterPrimeError

__all__ = [
    "CorruptDatasetError",
    "DATASETS",
    "DatasetError",
    "DatasetNotFoundError",
    "InvalidSplitError",
    "check_images_exist",
    "REFER_SPLITS",
    "PHRASECUT_SPLITS",
    "Sample",
    "default_split_by",
    "group_by_image",
    "load_dataset",
    "load_phrasecut",
    "load_refer",
    "polygons_to_mask",
    "segmentation_to_mask",
]


class DatasetError(IterPrimeError):
    """A benchmark dataset that cannot be loaded as asked."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """An annotation file or an image is missing (the message names the path)."""


class InvalidSplitError(DatasetError, ValueError):
    """Unknown dataset, split or split_by name (the message lists the valid ones)."""


class CorruptDatasetError(DatasetError, ValueError):
    """An annotation file exists but cannot be read or has an unexpected structure."""


#: Valid (dataset -> split_by -> splits). ``train`` is accepted too but is not an evaluation split.
REFER_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "refcoco": {"unc": ("val", "testA", "testB", "train"), "google": ("val", "test", "train")},
    "refcoco+": {"unc": ("val", "testA", "testB", "train")},
    "refcocog": {"umd": ("val", "test", "train"), "google": ("val", "train")},
}
PHRASECUT_SPLITS: tuple[str, ...] = ("val", "test", "miniv", "train")
DATASETS: tuple[str, ...] = (*REFER_SPLITS, "phrasecut")

COCO_IMAGE_SUBDIR = Path("images") / "mscoco" / "images" / "train2014"
PHRASECUT_SUBDIRS: tuple[str, ...] = ("VGPhraseCut_v0", "data/VGPhraseCut_v0", "phrasecut", ".")
PHRASECUT_IMAGE_INFO: tuple[str, ...] = ("image_data_split.json", "image_data_split3000.json")


@dataclass(frozen=True)
class Sample:
    """One expression of one benchmark: an image, a sentence and its ground-truth mask.

    ``sample_id`` is unique within (dataset, split_by, split) and stable across runs; the evaluation
    runner resumes by it. ``height``/``width`` are the annotated image size (None when the dataset does
    not give it; then it is read from the image header).
    """

    sample_id: str
    dataset: str
    split: str
    image_id: Any
    image_path: Path
    sentence: str
    height: int | None = None
    width: int | None = None
    ref_id: Any = None
    ann_ids: tuple = ()
    category: str | None = None
    _gt_fn: Callable[[int, int], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def image_size(self) -> tuple[int, int]:
        """(height, width) of the original image (annotation, else the image file's header)."""
        if self.height is not None and self.width is not None:
            return int(self.height), int(self.width)
        if not self.image_path.is_file():
            raise DatasetNotFoundError(f"image not found: {self.image_path}")
        from PIL import Image

        with Image.open(self.image_path) as im:
            w, h = im.size
        return int(h), int(w)

    def gt_mask(self) -> np.ndarray:
        """(H, W) bool ground truth at the original resolution."""
        if self._gt_fn is None:
            raise DatasetError(f"sample {self.sample_id} has no ground truth")
        h, w = self.image_size()
        m = np.asarray(self._gt_fn(h, w))
        return m.astype(bool, copy=False)

    def meta(self) -> dict:
        """JSON-serialisable identifiers (for the per-sample JSONL)."""
        return {
            "sample_id": self.sample_id,
            "image_id": self.image_id,
            "ref_id": self.ref_id,
            "ann_ids": list(self.ann_ids),
            "image": self.image_path.name,
            "sentence": self.sentence,
        }


# --------------------------------------------------------------------------------------------- masks


def _valid_polygons(polys: Sequence[Sequence[float]]) -> list[list[float]]:
    # A polygon needs >= 3 points. Dropping shorter ones also avoids pycocotools reading a list whose
    # first entry has exactly 4 numbers as bounding boxes.
    out = []
    for p in polys:
        flat = [float(v) for v in p]
        if len(flat) >= 6 and len(flat) % 2 == 0:
            out.append(flat)
    return out


def _decode(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():  # pycocotools' numpy-2 copy= DeprecationWarning, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode([rle])[:, :, 0].astype(bool)


def polygons_to_mask(polys: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Union of COCO-style flat polygons ``[x0, y0, x1, y1, ...]`` as an (H, W) bool mask.

    Overlapping parts are binarised (a pixel covered twice is simply True).
    """
    from pycocotools import mask as mask_utils

    polys = _valid_polygons(polys)
    if not polys:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(polys, int(height), int(width))
    return _decode(mask_utils.merge(rles))


def segmentation_to_mask(segm: Any, height: int, width: int) -> np.ndarray:
    """COCO ``segmentation`` (polygon list, uncompressed RLE or compressed RLE) -> (H, W) bool."""
    from pycocotools import mask as mask_utils

    if isinstance(segm, list):
        return polygons_to_mask(segm, height, width)
    if isinstance(segm, dict) and "counts" in segm:
        size = segm.get("size") or [height, width]
        if [int(size[0]), int(size[1])] != [int(height), int(width)]:
            raise CorruptDatasetError(
                f"RLE size {list(size)} does not match the image size {[height, width]}")
        counts = segm["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            rle = mask_utils.frPyObjects({"size": [int(height), int(width)], "counts": counts},
                                         int(height), int(width))
        else:  # compressed RLE (bytes or str)
            rle = {"size": [int(height), int(width)],
                   "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return _decode(rle)
    raise CorruptDatasetError(f"unsupported segmentation format: {type(segm).__name__}")


# --------------------------------------------------------------------------------------------- REFER


def default_split_by(dataset: str) -> str:
    """The standard split_by: unc for refcoco/refcoco+, umd for refcocog."""
    _check_dataset(dataset)
    if dataset == "phrasecut":
        raise InvalidSplitError("phrasecut has no split_by")
    return "umd" if dataset == "refcocog" else "unc"


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise InvalidSplitError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")


def _check_refer_split(dataset: str, split_by: str, split: str) -> None:
    _check_dataset(dataset)
    by = REFER_SPLITS[dataset]
    if split_by not in by:
        raise InvalidSplitError(
            f"unknown split_by {split_by!r} for {dataset}; valid: {', '.join(by)}")
    if split not in by[split_by]:
        raise InvalidSplitError(
            f"unknown split {split!r} for {dataset} ({split_by}); valid: {', '.join(by[split_by])}")


def _fix_latin1(obj: Any) -> Any:
    # Python-2 pickles of byte strings decoded as latin-1: recover the UTF-8 text.
    if isinstance(obj, str):
        try:
            return obj.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return obj
    if isinstance(obj, list):
        return [_fix_latin1(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_fix_latin1(v) for v in obj)
    if isinstance(obj, dict):
        return {_fix_latin1(k): _fix_latin1(v) for k, v in obj.items()}
    return obj


_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                  ImportError, IndexError, KeyError, UnicodeDecodeError, MemoryError)


def _load_refs_pickle(path: Path) -> list[dict]:
    """Load a user-provided ``refs(*).p``. Only ever called on a path under the user's data root."""
    if not path.is_file():
        raise DatasetNotFoundError(f"refs file not found: {path}")
    try:
        with open(path, "rb") as f:
            refs = pickle.load(f)  # noqa: S301 - user-provided dataset file, documented
    except UnicodeDecodeError:
        try:
            with open(path, "rb") as f:
                refs = _fix_latin1(pickle.load(f, encoding="latin-1"))  # noqa: S301
        except _PICKLE_ERRORS as e:
            raise CorruptDatasetError(f"cannot read refs pickle {path}: {type(e).__name__}: {e}") from e
    except _PICKLE_ERRORS as e:
        raise CorruptDatasetError(f"cannot read refs pickle {path}: {type(e).__name__}: {e}") from e
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise CorruptDatasetError(f"refs pickle {path} is not a list of ref dicts")
    required = ("ref_id", "ann_id", "image_id", "split", "sentences")
    for r in refs:
        missing = [k for k in required if k not in r]
        if missing:
            raise CorruptDatasetError(f"refs pickle {path}: a ref lacks {missing} (got keys {sorted(r)})")
    return refs


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DatasetNotFoundError(f"{what} not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptDatasetError(f"cannot parse {what} {path}: {e}") from e


def _check_unique_ids(samples: list[Sample], where: str) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.sample_id in seen:
            raise CorruptDatasetError(f"{where}: duplicate sample id {s.sample_id!r}")
        seen.add(s.sample_id)


def check_images_exist(samples: Sequence[Sample]) -> None:
    """Raise :class:`DatasetNotFoundError` naming the first missing image (and how many are missing)."""
    seen: set[Path] = set()
    missing: list[Path] = []
    for s in samples:
        if s.image_path in seen:
            continue
        seen.add(s.image_path)
        if not s.image_path.is_file():
            missing.append(s.image_path)
    if missing:
        more = f" (and {len(missing) - 1} more missing images)" if len(missing) > 1 else ""
        raise DatasetNotFoundError(f"image not found: {missing[0]}{more}; "
                                   "check --data-root / --image-dir")


def load_refer(data_root: str | Path, dataset: str, split: str, split_by: str | None = None,
               image_dir: str | Path | None = None, sentence_field: str = "sent",
               check_images: bool = True) -> list[Sample]:
    """All sentences of ``dataset``/``split_by``/``split`` as samples, in refs-file order.

    Args:
        data_root: directory holding ``<dataset>/refs(<split_by>).p`` and ``<dataset>/instances.json``.
        dataset: ``refcoco``, ``refcoco+`` or ``refcocog``.
        split: ``val``/``testA``/``testB`` (unc), ``val``/``test`` (umd; refcoco google), ``val``
            (refcocog google), or ``train``.
        split_by: ``unc`` (refcoco, refcoco+; also ``google`` for refcoco), ``umd`` or ``google``
            (refcocog); default: unc for refcoco/refcoco+, umd for refcocog.
        image_dir: COCO train2014 image directory (default ``DATA_ROOT/images/mscoco/images/train2014``).
        sentence_field: ``sent`` (the dataset's normalised, lower-cased sentence) or ``raw``.
        check_images: raise :class:`DatasetNotFoundError` now if any image is missing.
    """
    if dataset == "phrasecut" or dataset not in REFER_SPLITS:
        _check_dataset(dataset)
        raise InvalidSplitError(f"{dataset} is not a REFER dataset; use load_phrasecut")
    split_by = split_by or default_split_by(dataset)
    _check_refer_split(dataset, split_by, split)
    if sentence_field not in ("sent", "raw"):
        raise ValueError(f"sentence_field must be 'sent' or 'raw', got {sentence_field!r}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"data root not found: {root}")
    ds_dir = root / dataset
    refs = _load_refs_pickle(ds_dir / f"refs({split_by}).p")
    inst = _load_json(ds_dir / "instances.json", "instances file")
    if not isinstance(inst, dict) or "images" not in inst or "annotations" not in inst:
        raise CorruptDatasetError(f"{ds_dir / 'instances.json'} lacks 'images'/'annotations'")
    img_dir = Path(image_dir).expanduser() if image_dir else root / COCO_IMAGE_SUBDIR
    try:
        images = {im["id"]: im for im in inst["images"]}
        anns = {a["id"]: a for a in inst["annotations"]}
        cats = {c["id"]: c.get("name") for c in inst.get("categories", [])}
    except (KeyError, TypeError) as e:
        raise CorruptDatasetError(f"{ds_dir / 'instances.json'}: malformed entry ({e})") from e

    samples: list[Sample] = []
    for ref in refs:
        if ref["split"] != split:
            continue
        ann = anns.get(ref["ann_id"])
        im = images.get(ref["image_id"])
        if ann is None or im is None:
            raise CorruptDatasetError(
                f"ref {ref['ref_id']}: annotation {ref['ann_id']} or image {ref['image_id']} "
                f"not in {ds_dir / 'instances.json'}")
        try:
            h, w, fname = int(im["height"]), int(im["width"]), im["file_name"]
            segm = ann["segmentation"]
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptDatasetError(f"ref {ref['ref_id']}: malformed image/annotation ({e})") from e
        gt_fn = _make_segm_fn(segm)
        for k, sent in enumerate(ref["sentences"]):
            text = sent.get(sentence_field) or sent.get("sent") or sent.get("raw") or ""
            sent_id = sent.get("sent_id", k)
            samples.append(Sample(
                sample_id=f"r{ref['ref_id']}_s{sent_id}",
                dataset=dataset,
                split=split,
                image_id=ref["image_id"],
                image_path=img_dir / fname,
                sentence=str(text),
                height=h,
                width=w,
                ref_id=ref["ref_id"],
                ann_ids=(ref["ann_id"],),
                category=cats.get(ref.get("category_id", ann.get("category_id"))),
                _gt_fn=gt_fn,
            ))
    _check_unique_ids(samples, str(ds_dir / f"refs({split_by}).p"))
    if check_images:
        check_images_exist(samples)
    return samples


def _make_segm_fn(segm: Any) -> Callable[[int, int], np.ndarray]:
    def fn(h: int, w: int) -> np.ndarray:
        return segmentation_to_mask(segm, h, w)

    return fn


# ------------------------------------------------------------------------------------------ PhraseCut


def _phrasecut_dir(root: Path, split: str) -> Path:
    tried = []
    for sub in PHRASECUT_SUBDIRS:
        d = (root / sub) if sub != "." else root
        tried.append(str(d / f"refer_{split}.json"))
        if (d / f"refer_{split}.json").is_file():
            return d
    raise DatasetNotFoundError("PhraseCut annotation file not found; tried: " + ", ".join(tried))


def _phrasecut_instance_polys(instance: Any) -> list[list[float]]:
    # One instance = a list of polygons; one polygon = [[x, y], ...] (or already flat [x, y, ...]).
    out = []
    for poly in instance:
        if poly and isinstance(poly[0], (list, tuple)):
            out.append([float(c) for pt in poly for c in pt[:2]])
        else:
            out.append([float(c) for c in poly])
    return out


def load_phrasecut(data_root: str | Path, split: str, image_dir: str | Path | None = None,
                   check_images: bool = True) -> list[Sample]:
    """All PhraseCut (VGPhraseCut v0) tasks of ``split`` as samples; GT = union of instance polygons."""
    if split not in PHRASECUT_SPLITS:
        raise InvalidSplitError(
            f"unknown split {split!r} for phrasecut; valid: {', '.join(PHRASECUT_SPLITS)}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"data root not found: {root}")
    d = _phrasecut_dir(root, split)
    tasks = _load_json(d / f"refer_{split}.json", "PhraseCut annotation file")
    if not isinstance(tasks, list):
        raise CorruptDatasetError(f"{d / f'refer_{split}.json'} is not a list of tasks")
    sizes: dict[Any, tuple[int, int]] = {}
    info_path = next((d / n for n in PHRASECUT_IMAGE_INFO if (d / n).is_file()), None)
    if info_path is not None:
        info = _load_json(info_path, "PhraseCut image info")
        for im in info if isinstance(info, list) else []:
            try:
                sizes[im["image_id"]] = (int(im["height"]), int(im["width"]))
            except (KeyError, TypeError, ValueError):
                continue
    img_dir = Path(image_dir).expanduser() if image_dir else d / "images"
    samples: list[Sample] = []
    for k, t in enumerate(tasks):
        try:
            image_id = t["image_id"]
            phrase = t["phrase"]
            instances = t["Polygons"]
        except (KeyError, TypeError) as e:
            raise CorruptDatasetError(f"PhraseCut task #{k} in {d}: missing field {e}") from e
        polys = [p for inst in instances for p in _phrasecut_instance_polys(inst)]
        h, w = sizes.get(image_id, (None, None))
        samples.append(Sample(
            sample_id=str(t.get("task_id", f"{image_id}_{k}")),
            dataset="phrasecut",
            split=split,
            image_id=image_id,
            image_path=img_dir / f"{image_id}.jpg",
            sentence=str(phrase),
            height=h,
            width=w,
            ref_id=t.get("task_id"),
            ann_ids=tuple(t.get("ann_ids", ()) or ()),
            _gt_fn=_make_poly_fn(polys),
        ))
    _check_unique_ids(samples, str(d / f"refer_{split}.json"))
    if check_images:
        check_images_exist(samples)
    return samples


def _make_poly_fn(polys: list[list[float]]) -> Callable[[int, int], np.ndarray]:
    def fn(h: int, w: int) -> np.ndarray:
        return polygons_to_mask(polys, h, w)

    return fn


# -------------------------------------------------------------------------------------------- common


def load_dataset(dataset: str, split: str, data_root: str | Path, split_by: str | None = None,
                 image_dir: str | Path | None = None, sentence_field: str = "sent",
                 check_images: bool = True) -> list[Sample]:
    """Dispatch to :func:`load_refer` or :func:`load_phrasecut`."""
    _check_dataset(dataset)
    if dataset == "phrasecut":
        if split_by not in (None, ""):
            raise InvalidSplitError("phrasecut has no split_by")
        return load_phrasecut(data_root, split, image_dir=image_dir, check_images=check_images)
    return load_refer(data_root, dataset, split, split_by=split_by, image_dir=image_dir,
                      sentence_field=sentence_field, check_images=check_images)


def group_by_image(samples: Sequence[Sample]) -> "OrderedDict[Path, list[Sample]]":
    """Samples grouped by image path, groups in order of first appearance, sample order kept."""
    groups: OrderedDict[Path, list[Sample]] = OrderedDict()
    for s in samples:
        groups.setdefault(s.image_path, []).append(s)
    return groups
