"""GPU-marked tests: run by scripts/gpu_check.sh on a machine with a CUDA GPU, skipped elsewhere.

What they check there: pinned, non-blocking host-to-device copies give the same tensor; the fp16 image
encoders keep the Grad-CAM path in fp32 and the numbers close to fp32 on the GPU; the bench's CUDA
timings synchronise (a timed section covers its kernels); an out-of-memory error in an optional bench
section becomes its result. The parts that need no GPU are covered on the CPU by test_bench.py,
test_limits.py and test_gpu_check.py.
"""
import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh)")]


def test_pinned_non_blocking_copy_is_exact():
    from ros2_iterprime.models.loading import to_device

    x = torch.randn(3, 1024, 1024)
    y = to_device(x, torch.device("cuda"), torch.float16)
    assert y.device.type == "cuda" and y.dtype == torch.float16
    torch.testing.assert_close(y.float().cpu(), x.half().float())


def test_fp16_encoders_keep_grad_cam_fp32_and_close(rgb_image):
    from ros2_iterprime.grounding.segmenter import load_segmenter

    ref = load_segmenter("tiny-random", device="cuda", dtype="fp32")
    low = load_segmenter("tiny-random", device="cuda", dtype="auto")  # fp16 on CUDA
    assert low.models.dtype == torch.float16
    assert next(low.models.blip.text_encoder.parameters()).dtype == torch.float32
    a = ref.segment_image(rgb_image, "the red cup behind the laptop")
    b = low.segment_image(rgb_image, "the red cup behind the laptop")
    assert np.isfinite(b.heatmap).all() and np.abs(a.heatmap - b.heatmap).mean() < 0.05


def test_cuda_timings_cover_the_kernels():
    """A timed section that synchronises sees a long kernel; the unsynchronised launch returns early."""
    import time

    from ros2_iterprime.benchmark.run import _sync

    dev = torch.device("cuda")
    a = torch.randn(8192, 8192, device=dev)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(20):
        a @ a
    launched = time.perf_counter() - t0
    _sync(dev)
    synced = time.perf_counter() - t0
    assert synced >= launched


def test_tracker_bf16_on_cuda_streams():
    from tracking_helpers import block_frame, red_mask

    from ros2_iterprime.tracking import StreamingSession, load_tracker

    tm = load_tracker("tiny-random", device="cuda")
    assert tm.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)
    s = StreamingSession(tm)
    s.seed(block_frame(0), red_mask(block_frame(0)))
    out = s.track(block_frame(1))
    assert out.mask.shape == block_frame(1).shape[:2] and np.isfinite(out.object_score)


def test_bench_tiny_on_cuda(tmp_path):
    import json

    from ros2_iterprime.cli import main as cli

    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--model", "tiny-random", "--device", "cuda", "--reps", "1", "--warmup", "1",
                     "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["settings"]["device"].startswith("cuda") and res["settings"]["dtype"] == "fp16"
    assert res["memory"]["gpu_max_allocated_mb"] > 0
    assert {"e2e_first_ms", "e2e_second_ms"} <= set(res["targets"])
