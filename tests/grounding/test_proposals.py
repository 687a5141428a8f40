"""Torch NMS, mask boxes, peak finding and SAM proposal geometry (tiny SAM)."""
import numpy as np
import torch

from ros2_iterprime.grounding.proposals import SamProposer, box_nms, find_peaks, mask_boxes, stability_score


def test_box_nms_matches_greedy_definition():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.9])
    keep = box_nms(boxes, scores, 0.5)
    assert keep.tolist() == [0, 2]  # tie 0.9/0.9 -> lower index first; 1 and 3 suppressed by 0
    assert box_nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0


def test_mask_boxes_and_stability():
    m = torch.zeros(2, 5, 6, dtype=torch.bool)
    m[0, 1:3, 2:5] = True
    assert mask_boxes(m).tolist() == [[2, 1, 5, 3], [0, 0, 0, 0]]
    logits = torch.tensor([[[2.0, 0.5], [-0.5, -2.0]]])
    assert torch.allclose(stability_score(logits), torch.tensor([1 / 3]))


def test_find_peaks_global_max_first():
    h = torch.zeros(30, 30)
    h[5, 5], h[20, 25], h[6, 6] = 0.5, 1.0, 0.4
    peaks = find_peaks(h, 3, min_distance=3)
    assert peaks[0] == (20, 25) and peaks[1] == (5, 5) and len(peaks) == 2  # (6,6) suppressed by (5,5)


def test_sam_proposals_and_upsampling_geometry(tiny_models):
    sam = SamProposer(tiny_models.sam, tiny_models.sam_processor)
    rgb = np.zeros((60, 100, 3), np.uint8)
    img = sam.encode(rgb)
    assert img.input_size == (77, 128) and img.pad_size == 128 and img.grid == 32
    assert img.lowres_size == (20, 32)
    props = sam.from_peaks(img, [(5, 5), (10, 20)], multimask=True)
    assert len(props) == 6 and props.masks.shape == (6, 20, 32) and props.iou.shape == (6,)
    full = sam.upsample(img, props.logits[0])
    assert full.shape == (60, 100) and full.dtype == bool
    # a logit map that is positive exactly on the valid left half maps to the left half of the image
    logits = torch.full((32, 32), -10.0)
    logits[:, :16] = 10.0
    half = sam.upsample(img, logits)
    assert half[:, :45].all() and not half[:, 55:].any()
    auto = sam.automatic(img, points_per_side=4, pred_iou_thresh=0.0, stability_thresh=0.0)
    assert len(auto) >= 1 and auto.masks.shape[1:] == (20, 32)
