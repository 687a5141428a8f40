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
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("int4", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_tiny_random_is_seeded_and_frozen():
    from ros2_iterprime.models.tiny import build_tiny_blip

    a, _, tok = build_tiny_blip(seed=0)
    b, _, _ = build_tiny_blip(seed=0)
    c, _, _ = build_tiny_blip(seed=1)
    pa, pb, pc = (dict(m.named_parameters())["itm_head.weight"] for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    ids = tok("there is a left guy")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and tok.unk_token_id not in ids
