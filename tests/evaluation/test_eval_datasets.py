"""REFER and PhraseCut loaders on synthetic datasets generated here (no downloads)."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
from synthetic_datasets import H, W, make_phrasecut_dataset, make_refer_dataset

from ros2_iterprime.errors import IterPrimeError
from ros2_iterprime.evaluation.datasets import (
    CorruptDatasetError,
    DatasetNotFoundError,
    InvalidSplitError,
    group_by_image,
    load_dataset,
    load_phrasecut,
    load_refer,
    segmentation_to_mask,
)


def _check(samples, expected):
    assert [s.sample_id for s in samples] == [e.sample_id for e in expected]
    assert [s.sentence for s in samples] == [e.sentence for e in expected]
    assert [s.image_path.name for s in samples] == [e.image for e in expected]
    for s, e in zip(samples, expected):
        gt = s.gt_mask()
        assert gt.dtype == bool and gt.shape == (H, W)
        assert np.array_equal(gt, e.mask), s.sample_id


@pytest.fixture(scope="module")
def refer_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("refer")
    exp = {"refcoco": make_refer_dataset(root, "refcoco", "unc"),
           "refcoco+": make_refer_dataset(root, "refcoco+", "unc"),
           "refcocog": make_refer_dataset(root, "refcocog", "umd", splits=("val", "test"))}
    return root, exp


@pytest.mark.parametrize("dataset,split,n", [
    ("refcoco", "val", 6), ("refcoco", "testA", 2), ("refcoco", "testB", 1),
    ("refcoco+", "val", 6), ("refcocog", "val", 6), ("refcocog", "test", 3),
])
def test_refer_samples_sentences_masks(refer_root, dataset, split, n):
    root, exp = refer_root
    samples = load_refer(root, dataset, split)
    assert len(samples) == n
    _check(samples, exp[dataset][split])
    assert all(s.dataset == dataset and s.split == split for s in samples)


def test_refer_every_sentence_is_a_sample_and_train_excluded(refer_root):
    root, _ = refer_root
    val = load_refer(root, "refcoco", "val")
    assert [s.ref_id for s in val] == [0, 0, 1, 2, 2, 3]
    assert all(s.sample_id != "r6_s999" for s in val)
    assert len({s.sample_id for s in val}) == len(val)
    # one image group per image, sentence order kept
    groups = group_by_image(val)
    assert [p.name for p in groups] == ["COCO_train2014_000000000001.jpg", "COCO_train2014_000000000002.png"]
    assert [len(g) for g in groups.values()] == [3, 3]


def test_refer_mask_formats(refer_root):
    root, _ = refer_root
    by_id = {s.sample_id: s for s in load_refer(root, "refcoco", "val")}
    overlap = by_id["r0_s0"].gt_mask()
    assert overlap[15, 15] and overlap.dtype == bool  # covered by both polygon parts: binarised
    assert overlap.sum() == 16 * 16 + 18 * 18 - 8 * 8
    assert by_id["r1_s2"].gt_mask().sum() == 20 * 10  # uncompressed RLE
    assert by_id["r2_s3"].gt_mask().sum() == 40 * 24  # compressed RLE
    assert by_id["r3_s5"].gt_mask().sum() == 12 * 10  # the 2-point part is ignored, not a box


def test_refer_raw_sentence_field(refer_root):
    root, _ = refer_root
    raw = load_refer(root, "refcoco", "val", sentence_field="raw")
    assert raw[0].sentence == "The Left Square"
    assert load_refer(root, "refcoco", "val")[0].sentence == "the left square"


def test_refer_split_by_google_and_default(tmp_path):
    make_refer_dataset(tmp_path, "refcocog", "google", splits=("val",))
    assert len(load_refer(tmp_path, "refcocog", "val", split_by="google")) == 9
    with pytest.raises(InvalidSplitError, match="valid: val, train"):
        load_refer(tmp_path, "refcocog", "test", split_by="google")
    with pytest.raises(DatasetNotFoundError, match=r"refs\(umd\)\.p"):  # default split_by is umd
        load_refer(tmp_path, "refcocog", "val")


def test_image_dir_override(refer_root, tmp_path):
    root, exp = refer_root
    moved = tmp_path / "imgs"
    shutil.copytree(root / "images" / "mscoco" / "images" / "train2014", moved)
    samples = load_refer(root, "refcoco", "testA", image_dir=moved)
    assert all(s.image_path.parent == moved for s in samples)
    _check(samples, exp["refcoco"]["testA"])


@pytest.mark.parametrize("dataset,split_by,split", [
    ("refcoco", "unc", "test"), ("refcoco", "umd", "val"), ("refcocog", "umd", "testA"),
    ("refcocog", "google", "test"), ("refcoco+", None, "Val"),
])
def test_wrong_split_names(refer_root, dataset, split_by, split):
    root, _ = refer_root
    with pytest.raises(InvalidSplitError, match="valid"):
        load_refer(root, dataset, split, split_by=split_by)


def test_wrong_dataset_and_phrasecut_split(tmp_path):
    with pytest.raises(InvalidSplitError, match="unknown dataset"):
        load_dataset("refclef", "val", tmp_path)
    with pytest.raises(InvalidSplitError, match="miniv"):
        load_phrasecut(tmp_path, "testA")


def test_missing_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="data root"):
        load_refer(tmp_path / "nope", "refcoco", "val")
    make_refer_dataset(tmp_path, "refcoco", "unc")
    (tmp_path / "refcoco" / "instances.json").unlink()
    with pytest.raises(DatasetNotFoundError, match="instances.json"):
        load_refer(tmp_path, "refcoco", "val")
    with pytest.raises(DatasetNotFoundError, match=r"refs\(unc\)\.p"):
        load_refer(tmp_path, "refcoco+", "val")
    assert issubclass(DatasetNotFoundError, IterPrimeError)


def test_missing_image_is_named(tmp_path):
    make_refer_dataset(tmp_path, "refcoco", "unc")
    img = tmp_path / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000002.png"
    img.unlink()
    with pytest.raises(DatasetNotFoundError, match="COCO_train2014_000000000002.png"):
        load_refer(tmp_path, "refcoco", "val")
    # other splits do not need that image; and the check can be deferred
    assert len(load_refer(tmp_path, "refcoco", "testA")) == 2
    lazy = load_refer(tmp_path, "refcoco", "val", check_images=False)
    assert len(lazy) == 6


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", b"\x80\x04\x95garbage",
                                     pickle.dumps({"not": "a list"}), pickle.dumps([{"ref_id": 1}])])
def test_corrupt_pickle(tmp_path, content):
    make_refer_dataset(tmp_path, "refcoco", "unc")
    (tmp_path / "refcoco" / "refs(unc).p").write_bytes(content)
    with pytest.raises(CorruptDatasetError, match=r"refs\(unc\)\.p|refs pickle"):
        load_refer(tmp_path, "refcoco", "val")


def test_corrupt_instances(tmp_path):
    make_refer_dataset(tmp_path, "refcoco", "unc")
    (tmp_path / "refcoco" / "instances.json").write_text("{broken")
    with pytest.raises(CorruptDatasetError, match="instances.json"):
        load_refer(tmp_path, "refcoco", "val")
    (tmp_path / "refcoco" / "instances.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(CorruptDatasetError, match="not in"):
        load_refer(tmp_path, "refcoco", "val")


def test_python2_latin1_pickle(tmp_path):
    """A Python-2 pickle of byte strings holding UTF-8 text (not ASCII) still loads, correctly decoded."""
    make_refer_dataset(tmp_path, "refcoco", "unc")
    p = tmp_path / "refcoco" / "refs(unc).p"
    refs = pickle.loads(p.read_bytes())
    refs[0]["sentences"][0]["sent"] = "café on the left"
    # Rewrite every str as a Python-2 'str' (SHORT_BINSTRING of UTF-8 bytes), as refer's pickles are.
    import pickletools

    data = pickle.dumps(refs, protocol=2)
    out = bytearray()
    for op, arg, _pos in pickletools.genops(data):
        if op.name == "BINUNICODE":
            raw = arg.encode("utf-8")
            assert len(raw) < 256
            out += b"U" + bytes([len(raw)]) + raw
        elif op.name in ("PROTO",):
            out += b"\x80" + bytes([arg])
        elif op.name == "STOP":
            out += b"."
        else:
            out += data[_pos: _pos + _oplen(data, _pos)]
    p.write_bytes(bytes(out))
    samples = load_refer(tmp_path, "refcoco", "val")
    assert samples[0].sentence == "café on the left"
    assert samples[1].sentence == "square on top left"


def _oplen(data: bytes, pos: int) -> int:
    import pickletools

    it = pickletools.genops(data[pos:] + b".")
    next(it)
    nxt = next(it)
    return nxt[2]


def test_segmentation_to_mask_errors():
    with pytest.raises(CorruptDatasetError):
        segmentation_to_mask({"size": [10, 10], "counts": [100]}, H, W)
    with pytest.raises(CorruptDatasetError):
        segmentation_to_mask(42, H, W)
    assert not segmentation_to_mask([], H, W).any()


# --------------------------------------------------------------------------------------- PhraseCut


@pytest.fixture(scope="module")
def phrasecut_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("phrasecut")
    return root, make_phrasecut_dataset(root)


@pytest.mark.parametrize("split,n", [("val", 3), ("test", 2), ("miniv", 1)])
def test_phrasecut_samples(phrasecut_root, split, n):
    root, exp = phrasecut_root
    samples = load_phrasecut(root, split)
    assert len(samples) == n
    _check(samples, exp[split])
    via = load_dataset("phrasecut", split, root / "VGPhraseCut_v0")  # the directory itself works too
    assert [s.sample_id for s in via] == [s.sample_id for s in samples]


def test_phrasecut_union_and_size_from_header(phrasecut_root):
    root, _ = phrasecut_root
    s = {x.sample_id: x for x in load_phrasecut(root, "val")}
    assert s["11__0"].gt_mask().sum() == 8 * 6 + 10 * 10
    assert s["12__0"].height is None and s["12__0"].image_size() == (H, W)


def test_phrasecut_image_info_name_and_repo_layout(tmp_path, phrasecut_root):
    root, _ = phrasecut_root
    d = tmp_path / "PhraseCutDataset" / "data"
    shutil.copytree(root / "VGPhraseCut_v0", d / "VGPhraseCut_v0")
    (d / "VGPhraseCut_v0" / "image_data_split.json").rename(d / "VGPhraseCut_v0" / "image_data_split3000.json")
    s = load_phrasecut(tmp_path / "PhraseCutDataset", "val")  # the PhraseCut repository's own layout
    assert s[0].height == H and s[0].width == W  # size from image_data_split3000.json


def test_phrasecut_missing(tmp_path, phrasecut_root):
    with pytest.raises(DatasetNotFoundError, match="refer_val.json"):
        load_phrasecut(tmp_path, "val")
    root, _ = phrasecut_root
    d = tmp_path / "pc"
    shutil.copytree(root, d)
    (d / "VGPhraseCut_v0" / "images" / "13.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="13.jpg"):
        load_phrasecut(d, "test")
    (d / "VGPhraseCut_v0" / "refer_miniv.json").write_text("[{]")
    with pytest.raises(CorruptDatasetError, match="refer_miniv.json"):
        load_phrasecut(d, "miniv")
    with pytest.raises(InvalidSplitError):
        load_dataset("phrasecut", "val", d, split_by="unc")
