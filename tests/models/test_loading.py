"""Model registry, device/dtype resolution, tiny-random determinism."""
import pytest
import torch

from ros2_iterprime.models.loading import PROFILES, resolve_device, resolve_dtype, resolve_profile


def test_profiles_and_overrides():
    assert resolve_profile("default") == ("Salesforce/blip-itm-base-coco", "facebook/sam-vit-base")
    assert resolve_profile("tiny-random") == ("tiny-random", "tiny-random")
    assert resolve_profile("default", vlm="/models/blip") == ("/models/blip", "facebook/sam-vit-base")
    assert "large" in PROFILES
    with pytest.raises(ValueError, match="unknown model profile"):
        resolve_profile("huge-thing")


def test_device_and_dtype():
    from ros2_iterprime.models.loading import cpu_native_bf16

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    # 'auto' on THIS machine's CPU: bf16 where it has native bf16, else fp32
    assert resolve_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if cpu_native_bf16() else torch.float32)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("int4", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("flags, auto", [
    (frozenset({"avx2", "avx512f", "avx512_bf16"}), torch.bfloat16),   # AVX512-BF16 (Zen 4, Cooper Lake)
    (frozenset({"avx2", "amx_tile", "amx_bf16"}), torch.bfloat16),     # AMX (Sapphire Rapids)
    (frozenset({"avx2", "avx512f"}), torch.float32),                   # AVX-512 without bf16 (Skylake-SP)
    (frozenset({"avx2"}), torch.float32),
    (frozenset(), torch.float32),                                       # unknown CPU
])
def test_auto_dtype_follows_the_cpu_flags(flags, auto):
    from ros2_iterprime.models.loading import dtype_choice

    dt, why = dtype_choice("auto", torch.device("cpu"), flags)
    assert dt == auto and why.startswith("auto:")
    assert dtype_choice("fp32", torch.device("cpu"), flags) == (torch.float32, "as given")
    assert dtype_choice("bf16", torch.device("cpu"), flags)[0] == torch.bfloat16  # honoured (emulated if need be)
    assert dtype_choice("auto", torch.device("cuda"), flags)[0] == torch.float16  # flags are the CPU's


def test_fp16_on_a_cpu_without_native_fp16_is_refused_with_the_reason():
    from ros2_iterprime.models.loading import UnsupportedDtypeError, dtype_choice

    for name in ("fp16", "float16", torch.float16):
        with pytest.raises(UnsupportedDtypeError, match="no native fp16.*hundreds of times slower.*bf16"):
            dtype_choice(name, torch.device("cpu"), frozenset({"avx512f", "avx512_bf16"}))
    # native fp16 (AVX512-FP16 / AMX-FP16 / Arm FP16 arithmetic) and GPUs keep it
    assert dtype_choice("fp16", torch.device("cpu"), frozenset({"avx512_fp16"}))[0] == torch.float16
    assert dtype_choice("fp16", torch.device("cpu"), frozenset({"asimdhp"}))[0] == torch.float16
    assert dtype_choice("fp16", torch.device("cuda"), frozenset())[0] == torch.float16


def test_cpu_flags_read_proc_cpuinfo(tmp_path, monkeypatch):
    import builtins

    from ros2_iterprime.models import loading

    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(fake if f == "/proc/cpuinfo" else f, *a, **k))
    assert loading.cpu_flags() == frozenset({"fpu", "avx2", "avx512f", "avx512_bf16"})  # the first CPU's line
    assert loading.cpu_native_bf16(loading.cpu_flags()) and not loading.cpu_native_fp16(loading.cpu_flags())


def test_loaded_models_keep_the_grad_cam_path_in_fp32():
    from ros2_iterprime.models.loading import load_models

    m = load_models("tiny-random", "tiny-random", device="cpu", dtype="bf16")
    assert next(m.blip.vision_model.parameters()).dtype == torch.bfloat16
    assert next(m.sam.vision_encoder.parameters()).dtype == torch.bfloat16
    for part in (m.blip.text_encoder, m.blip.itm_head, m.sam.mask_decoder, m.sam.prompt_encoder):
        assert all(p.dtype == torch.float32 for p in part.parameters())
    assert not any(p.requires_grad for p in m.blip.parameters())


def test_tiny_random_is_seeded_and_frozen():
    from ros2_iterprime.models.tiny import build_tiny_blip

    a, _, tok = build_tiny_blip(seed=0)
    b, _, _ = build_tiny_blip(seed=0)
    c, _, _ = build_tiny_blip(seed=1)
    pa, pb, pc = (dict(m.named_parameters())["itm_head.weight"] for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    ids = tok("there is a left guy")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and tok.unk_token_id not in ids
