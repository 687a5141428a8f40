"""Opt-in tests with the real checkpoints (ITERPRIME_REAL_WEIGHTS=1, weights in the local model cache).

They exercise what tiny-random cannot: the real BERT tokenizer's offsets, the checkpoints' own
preprocessor configs, and full-size shapes (24x24 BLIP patches, 256x256 SAM masks). They check the
pipeline, not accuracy (accuracy comes from `ros2_iterprime eval`).
"""
import os

import numpy as np
import pytest

pytestmark = [
    pytest.mark.real_weights,
    pytest.mark.skipif(os.environ.get("ITERPRIME_REAL_WEIGHTS") != "1",
                       reason="opt-in: set ITERPRIME_REAL_WEIGHTS=1 with the default weights in the model cache"),
]


@pytest.fixture(scope="module")
def real_segmenter():
    from ros2_iterprime.predictor import load_segmenter

    return load_segmenter("default", local_files_only=True)


def test_real_pipeline_end_to_end(real_segmenter):
    img = np.full((480, 640, 3), 120, np.uint8)
    img[100:300, 150:350] = (220, 20, 20)
    real_segmenter.set_image(img)
    assert real_segmenter.gradcam.layer == 7
    res = real_segmenter.segment("the red square on the left")
    assert res.mask.shape == (480, 640) and res.heatmap.shape == (480, 640)
    assert res.primary_word == "square" and "red" in res.kept_tokens and "square" in res.kept_tokens
    assert 1 <= res.rounds <= 3 and all(0.0 < p < 1.0 for p in res.match_probs)
    res2 = real_segmenter.segment("the grey background")
    assert res2.mask.shape == (480, 640)
