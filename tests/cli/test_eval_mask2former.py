"""`ros2_iterprime eval --proposals mask2former`: the paper's configuration (Mask2Former proposals).

In-process with a fake segmenter (what is asked of the loader, what the run records, resuming and
refusing), then the real pipeline on tiny-random (tiny BLIP + tiny Mask2Former, random weights: the
numbers are meaningless and the run says so).
"""
from __future__ import annotations

import json

import pytest
from synthetic_datasets import FakeSegmenter, make_refer_dataset

from ros2_iterprime.cli import evaluate as eval_cli
from ros2_iterprime.evaluation.runner import read_records

PAPER_M2F = "facebook/mask2former-swin-large-coco-panoptic"


class _Cfg:
    def __init__(self, config):
        self.pwem_mode, self.iterations = config.pwem_mode, config.iterations
        self.proposals, self.proposals_model = config.proposals, config.proposals_model


@pytest.fixture()
def fake_model(monkeypatch):
    import ros2_iterprime.grounding.segmenter as predictor

    calls = []

    def load(model="default", vlm=None, sam=None, config=None, **kw):
        calls.append({"model": model, "vlm": vlm, "sam": sam, "config": config, **kw})
        seg = FakeSegmenter()
        seg.config = _Cfg(config)
        return seg

    monkeypatch.setattr(predictor, "load_segmenter", load)
    return calls


@pytest.fixture(scope="module")
def refer_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_refer_dataset(root, "refcoco", "unc")
    return root


def _base(root, out, *extra):
    return ["--dataset", "refcoco", "--split", "val", "--data-root", str(root), "--out", str(out),
            "--no-progress", *extra]


def test_proposals_mask2former_is_the_papers_configuration(fake_model, refer_root, tmp_path):
    out = tmp_path / "o"
    assert eval_cli.main(_base(refer_root, out, "--proposals", "mask2former", "--limit", "2")) == 0
    cfg = fake_model[0]["config"]
    assert cfg.proposals_model == "mask2former" and fake_model[0]["model"] == "default"
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["proposals"] == "mask2former" and s["settings"]["proposals_model"] == PAPER_M2F
    assert s["models"]["proposals_model"] == PAPER_M2F and s["models"]["sam"] is None
    assert s["models"]["vlm"] == "Salesforce/blip-itm-base-coco"
    assert "proposals `facebook/mask2former-swin-large-coco-panoptic`" in (out / "results.md").read_text()
    # the long spelling is the same run: it resumes
    assert eval_cli.main(_base(refer_root, out, "--proposals-model", "mask2former", "--limit", "3")) == 0
    assert len(read_records(out / "samples.jsonl")) == 3
    assert fake_model[1]["config"].proposals_model == "mask2former"


def test_a_sam_run_and_a_mask2former_run_do_not_mix(fake_model, refer_root, tmp_path, capsys):
    out = tmp_path / "o"
    assert eval_cli.main(_base(refer_root, out, "--limit", "1")) == 0  # SAM v1 (default)
    assert eval_cli.main(_base(refer_root, out, "--limit", "1", "--proposals", "mask2former")) == 1
    assert "different settings" in capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert "proposals_model" not in s["settings"] and s["models"]["sam"] == "facebook/sam-vit-base"


def test_contradicting_proposal_flags_are_refused(fake_model, refer_root, tmp_path, capsys):
    rc = eval_cli.main(_base(refer_root, tmp_path / "o", "--proposals", "mask2former",
                             "--proposals-model", "facebook/sam2.1-hiera-tiny"))
    assert rc == 2 and "contradict" in capsys.readouterr().err and fake_model == []


def test_report_names_the_proposal_network(fake_model, refer_root, tmp_path, capsys):
    from ros2_iterprime.evaluation import report

    out = tmp_path / "o"
    assert eval_cli.main(_base(refer_root, out, "--proposals", "mask2former")) == 0
    capsys.readouterr()
    assert report.main([str(out / "summary.json")]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| refcoco |")][0]
    assert "| mask2former | Salesforce/blip-itm-base-coco + facebook/mask2former-swin-large-coco-panoptic |" in row


@pytest.mark.slow
def test_tiny_random_pipeline_with_mask2former_proposals(refer_root, tmp_path, capsys):
    out = tmp_path / "o"
    rc = eval_cli.main(_base(refer_root, out, "--model", "tiny-random", "--proposals", "mask2former",
                             "--limit", "3", "--iters", "1", "--device", "cpu"))
    assert rc == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] and s["runs"][0]["metrics"]["n"] == 3
    assert s["models"]["proposals_model"] == "tiny-random-mask2former" and s["models"]["sam"] is None
    assert s["settings"]["segmenter_config"]["proposals_model"] == "mask2former"
    assert "meaningless" in (out / "results.md").read_text()
    for r in read_records(out / "samples.jsonl"):
        assert 0 <= r["I"] <= r["U"] and r["U"] >= r["gt_area"] > 0
