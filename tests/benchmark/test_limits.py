"""The bench's yardstick (FLOP counting, matmul peaks) and its target verdicts, on small inputs."""
import copy

import pytest
import torch
import torch.nn.functional as F

from ros2_iterprime.benchmark import limits, targets


def test_cpu_sdpa_flops_are_counted_like_the_matmuls_they_replace():
    # torch's FlopCounterMode has no formula for the CPU flash kernel: without ours SDPA would count 0
    q, k, v = torch.randn(1, 4, 96, 32), torch.randn(1, 4, 160, 32), torch.randn(1, 4, 160, 32)
    fused, _ = limits.count_flops(F.scaled_dot_product_attention, q, k, v)
    manual, _ = limits.count_flops(lambda: torch.softmax(q @ k.transpose(-1, -2) / 32**0.5, -1) @ v)
    assert fused == manual == 2 * (2 * 4 * 96 * 160 * 32)
    # and its backward (the Grad-CAM text pass takes gradients through attention)
    qg = q.clone().requires_grad_(True)

    def fwd_bwd():
        F.scaled_dot_product_attention(qg, k, v).sum().backward()

    both, _ = limits.count_flops(fwd_bwd)
    assert both > fused


def test_count_flops_of_a_linear_and_the_module_breakdown():
    lin = torch.nn.Linear(64, 32)
    flops, out = limits.count_flops(lin, torch.randn(10, 64))
    assert flops == 2 * 10 * 64 * 32 and out.shape == (10, 32)
    seq = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    with limits.flop_counter() as fc:
        seq(torch.randn(3, 8))
    per = limits.module_flops(fc)
    assert per["Sequential"] == 2 * 3 * 8 * 8 + 2 * 3 * 8 * 4 and per["Sequential.1"] == 2 * 3 * 8 * 4


def test_matmul_peak_and_fraction_of_peak():
    p = limits.matmul_peak(torch.float32, torch.device("cpu"), n=256, reps=2)
    assert p["gflops"] > 0 and p["size"] == 256 and p["threads"] == torch.get_num_threads()
    assert limits.fraction_of_peak(2e9, 1.0, 4.0) == pytest.approx(0.5)
    assert limits.fraction_of_peak(0, 1.0, 4.0) is None and limits.fraction_of_peak(1, 0.0, 4.0) is None


def _fake_speed(monkeypatch, gflops_per_s):
    clock = {"t": 0.0}
    sizes = []

    def fake_mm(a, b):
        sizes.append(a.shape[0])
        clock["t"] += 2.0 * a.shape[0] ** 3 / (gflops_per_s * 1e9)
        return a

    monkeypatch.setattr(limits.torch, "mm", fake_mm)
    monkeypatch.setattr(limits.time, "perf_counter", lambda: clock["t"])
    return sizes


def test_an_emulated_dtype_stops_small_and_a_native_one_reaches_full_size(monkeypatch):
    """Clock and matmul are fakes: the size rule is checked without spending the time. At 1 GFLOP/s (fp16
    emulated on a CPU) 256^2 takes 0.034 s, 512^2 0.27 s; the next (2.1 s predicted) is never run."""
    sizes = _fake_speed(monkeypatch, 1.0)
    p = limits.matmul_peak(torch.float32, torch.device("cpu"), n=2048, reps=3)
    assert p["size"] == 512 and p["gflops"] == pytest.approx(1.0)
    assert sizes == [256, 256, 512, 512, 512, 512]  # warm-up, probe, first 512, 3 reps
    # a native dtype, even slowed down 3x by other jobs (60 GFLOP/s), is measured at the full size
    sizes = _fake_speed(monkeypatch, 60.0)
    p = limits.matmul_peak(torch.float32, torch.device("cpu"), n=2048, reps=2)
    assert p["size"] == 2048 and p["gflops"] == pytest.approx(60.0) and sizes.count(2048) == 3
    # sizes that are not powers of two end exactly at n
    sizes = _fake_speed(monkeypatch, 1000.0)
    assert limits.matmul_peak(torch.float32, torch.device("cpu"), n=1000, reps=1)["size"] == 1000


def test_shared_machine_note():
    assert limits.shared_machine_note({"parallel_efficiency": 0.95}, [0.1, 0.1, 0.1], 2) is None
    note = limits.shared_machine_note({"parallel_efficiency": 0.5}, [3.0, 2.0, 1.0], 2)
    assert "parallel efficiency 0.50" in note and "load average 3.00 on 2 CPUs" in note


def _result(first_ms=5000.0, second_ms=200.0, sam_fraction=0.7, device="cpu", tracking=None):
    rows = {"e2e: first expression on a new frame": first_ms, "e2e: second expression, same frame": second_ms,
            "floor: SAM image encoder": 0.8 * first_ms, "stage: BLIP vision pass": 500.0,
            "stage: text pass + backward, per round": 100.0}
    return {
        "settings": {"device": device, "cpu_count": 2, "threads": 2, "image": [640, 480], "iterations": 3,
                     "proposals": "cam_points", "vlm": "random:blip-itm-base", "sam": "random:sam-vit-base",
                     "dtype": "bf16"},
        "timings": {k: {"median_ms": v} for k, v in rows.items()},
        "ratios": {"pipeline_over_floor": 1.01, "second_over_first": second_ms / first_ms, "gradcam_speedup": 2.6},
        "limits": {"stages": [{"stage": "SAM image encoder", "dtype": "bf16", "gflops": 970.0, "median_ms": 4000.0,
                               "achieved_gflops": 242.0, "peak_gflops": 359.0, "fraction_of_peak": sam_fraction}],
                   "shared_machine": None},
        "tracking": tracking or {},
    }


def _track(per_frame_ms, fps, size=1024, default=True, smallest=False):
    return {"status": "measured", "default_config": default, "smallest_documented_size": smallest,
            "image_size": size, "num_maskmem": 7, "per_frame_ms": per_frame_ms, "sustained_fps": fps,
            "track_over_grounding": per_frame_ms / 5000.0,
            "timings": {"track: memory attention": {"median_ms": 0.5 * per_frame_ms},
                        "track: image encoder": {"median_ms": 0.3 * per_frame_ms}}}


def test_targets_met_not_met_and_the_reasons():
    ref = copy.deepcopy(_result(first_ms=10_700.0))
    ref["settings"]["dtype"] = "fp32"
    res = _result(tracking={"t": _track(1000.0, 1.0), "t@512": _track(400.0, 2.5, 512, False, True)})
    out = targets.evaluate(res, ref, "bf16")
    assert out["grounding_vs_reference"]["value"] == pytest.approx(5000 / 10_700) and out["grounding_vs_reference"]["met"]
    assert out["sam_encoder_fraction_of_peak"]["met"] and out["track_over_grounding"]["met"]
    assert out["fps_smallest_input"]["value"] == 2.5 and out["fps_smallest_input"]["met"]
    assert out["second_over_first"]["met"] is True and out["pipeline_over_floor"]["met"] is True
    # misses carry their measured reasons
    slow = _result(first_ms=8000.0, second_ms=800.0, sam_fraction=0.4, tracking={"t": _track(6000.0, 0.16)})
    out = targets.evaluate(slow, ref, "bf16")
    assert out["sam_encoder_fraction_of_peak"]["met"] is False and "GFLOP/s" in out["sam_encoder_fraction_of_peak"]["reason"]
    assert out["grounding_vs_reference"]["met"] is False and "80% of a grounding" in out["grounding_vs_reference"]["reason"]
    assert out["track_over_grounding"]["met"] is False and "memory attention 50%" in out["track_over_grounding"]["reason"]
    assert out["fps_smallest_input"]["met"] is None and "smallest documented" in out["fps_smallest_input"]["reason"]
    assert out["second_over_first"]["met"] is False and out["second_over_first"]["reason"]
    # the Grad-CAM ratio's miss names the bound its own timings allow: 3 (500 + 100) / (500 + 300) = 2.25
    slow["ratios"]["gradcam_speedup"] = 2.2
    out = targets.evaluate(slow, ref, "bf16")
    assert out["gradcam_speedup"]["met"] is False and "at most 2.25 at T = 3" in out["gradcam_speedup"]["reason"]


def test_reference_must_be_the_same_kind_of_run():
    res = _result()
    assert targets.comparable(res, None) == "no reference run found"
    other = _result()
    other["settings"]["cpu_count"] = 16
    assert "cpu_count" in targets.comparable(res, other)
    other = _result()
    other["settings"]["sam"] = "random:sam-vit-large"
    assert "sam" in targets.comparable(res, other)
    out = targets.evaluate(res, other, "bf16")
    assert out["grounding_vs_reference"]["met"] is None and "not comparable" in out["grounding_vs_reference"]["reason"]
    # a run at another dtype than auto's says so where the target is about auto's dtype
    res["settings"]["dtype"] = "fp32"
    assert "the target is for auto's bf16" in targets.evaluate(res, None, "bf16")["sam_encoder_fraction_of_peak"]["reason"]


def test_the_stored_reference_is_the_fp32_baseline():
    ref = targets.load_reference()
    assert ref is not None and ref["settings"]["dtype"] == "float32" and ref["settings"]["random_weights"]
    assert ref["timings"]["e2e: first expression on a new frame"]["median_ms"] > 0


def test_gpu_targets_are_absolute_latencies():
    res = _result(first_ms=50.0, second_ms=20.0, device="cuda:0")
    out = targets.evaluate(res, None, "fp16")
    assert set(out) == set(targets.GPU_TARGETS) and out["e2e_first_ms"]["met"] and out["e2e_second_ms"]["met"]
