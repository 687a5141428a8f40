"""SAM's relative-position bias in one buffer per encoder pass (`models.fast_attention`): bit-identical to
transformers' SDPA forward, no memory held between passes, safe with two threads, undoable."""
import copy
import threading

import pytest
import torch
from transformers import SamModel
from transformers.models.sam.modeling_sam import SamVisionSdpaAttention

from ros2_iterprime.models import fast_attention as fa
from ros2_iterprime.models.loading import load_models
from ros2_iterprime.models.published import sam_vit_base_config
from ros2_iterprime.models.tiny import build_tiny_sam


def _tiny_sam(dtype=torch.float32):
    sam, _ = build_tiny_sam(seed=3)
    return sam.eval().requires_grad_(False).to(dtype)


def _pixels(sam, seed=0, dtype=torch.float32):
    s = sam.config.vision_config.image_size
    return torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_workspace_forward_is_bit_identical_to_transformers(dtype):
    sam = _tiny_sam(dtype)
    # the tiny encoder has both kinds of layer: windowed (layer 0) and global (layer 1), both with rel-pos
    assert [layer.window_size for layer in sam.vision_encoder.layers] == [4, 0]
    assert all(type(layer.attn) is SamVisionSdpaAttention and layer.attn.use_rel_pos for layer in sam.vision_encoder.layers)
    pv = _pixels(sam, dtype=dtype)
    with torch.inference_mode():
        ref = sam.get_image_embeddings(pv)
        assert fa.use_sam_rel_pos_workspace(sam) == 2 and fa.sam_uses_rel_pos_workspace(sam)
        assert fa.use_sam_rel_pos_workspace(sam) == 0  # idempotent
        got = sam.get_image_embeddings(pv)
        again = sam.get_image_embeddings(_pixels(sam, seed=1, dtype=dtype))
        fa.restore_sam_rel_pos(sam)
        assert not fa.sam_uses_rel_pos_workspace(sam)
        assert all("forward" not in layer.attn.__dict__ for layer in sam.vision_encoder.layers)
        back = sam.get_image_embeddings(pv)
        ref1 = sam.get_image_embeddings(_pixels(sam, seed=1, dtype=dtype))
    assert torch.equal(got, ref) and torch.equal(back, ref) and torch.equal(again, ref1)


def test_one_full_size_global_layer_is_bit_identical_in_bf16():
    """SAM ViT-B's global-attention shape (64 x 64 tokens, 12 heads): the case the swap is for."""
    cfg = sam_vit_base_config().vision_config
    torch.manual_seed(0)
    attn = SamVisionSdpaAttention(cfg, window_size=0).eval().requires_grad_(False).to(torch.bfloat16)
    with torch.no_grad():  # the published init leaves rel-pos at zero: give it values so the bias matters
        attn.rel_pos_h.normal_()
        attn.rel_pos_w.normal_()
    x = torch.randn(1, 64, 64, cfg.hidden_size).to(torch.bfloat16)
    with torch.inference_mode():
        ref, _ = attn(x)
        attn._iterprime_rel_pos_workspace = fa._BiasWorkspace()
        got, _ = fa._sam_sdpa_ws_forward(attn, x)
    assert torch.equal(got, ref)


def test_no_buffer_is_held_between_passes_nor_after_a_failed_one():
    sam = _tiny_sam()
    fa.use_sam_rel_pos_workspace(sam)
    ws = sam.vision_encoder._iterprime_rel_pos_workspace
    seen = []
    layer = sam.vision_encoder.layers[1].attn
    orig_take = ws.take

    def spy(numel, like):
        buf = orig_take(numel, like)
        seen.append((numel, buf.untyped_storage().data_ptr()))
        return buf

    ws.take = spy
    with torch.inference_mode():
        sam.get_image_embeddings(_pixels(sam))
    assert ws._bufs == {}  # released at the end of the pass
    # windowed layer (4 windows x 2 heads x 4^4) then global (2 heads x 8^4): the larger one reallocates
    assert [n for n, _ in seen] == [4 * 2 * 4**4, 2 * 8**4]

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CPU out of memory (test)")

    layer.proj.forward = boom
    with pytest.raises(torch.OutOfMemoryError), torch.inference_mode():
        sam.get_image_embeddings(_pixels(sam))
    assert ws._bufs  # the failed pass left its buffer ...
    del layer.proj.forward
    with torch.inference_mode():
        sam.get_image_embeddings(_pixels(sam))
    assert ws._bufs == {}  # ... and the next pass releases it


def test_two_threads_on_one_encoder_get_their_own_buffers():
    sam = _tiny_sam()
    fa.use_sam_rel_pos_workspace(sam)
    inputs = [_pixels(sam, seed=i) for i in range(4)]
    with torch.inference_mode():
        fa.restore_sam_rel_pos(sam)
        refs = [sam.get_image_embeddings(p) for p in inputs]
        fa.use_sam_rel_pos_workspace(sam)
    out: dict[int, list] = {}

    def run(i):
        with torch.inference_mode():
            out[i] = [sam.get_image_embeddings(inputs[i]) for _ in range(10)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(o, refs[i]) for i in range(4) for o in out[i])


def test_a_deep_copy_gets_its_own_workspace_and_the_loader_applies_the_swap():
    sam = _tiny_sam()
    fa.use_sam_rel_pos_workspace(sam)
    cp = copy.deepcopy(sam)
    ws, ws_cp = sam.vision_encoder._iterprime_rel_pos_workspace, cp.vision_encoder._iterprime_rel_pos_workspace
    assert ws_cp is not ws and all(layer.attn._iterprime_rel_pos_workspace is ws_cp
                                   for layer in cp.vision_encoder.layers)
    with torch.inference_mode():
        assert torch.equal(cp.get_image_embeddings(_pixels(sam)), sam.get_image_embeddings(_pixels(sam)))
    m = load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")
    assert fa.sam_uses_rel_pos_workspace(m.sam)
    assert fa.attention_report(sam=m.sam)["sam_rel_pos_bias"] == "one buffer per encoder pass"


def test_an_eager_encoder_is_left_alone():
    cfg = sam_vit_base_config()
    cfg.vision_config.num_hidden_layers = 1
    cfg._attn_implementation = "eager"
    sam = SamModel(cfg)
    assert fa.use_sam_rel_pos_workspace(sam) == 0 and not fa.sam_uses_rel_pos_workspace(sam)


def test_with_autograd_the_swapped_forward_still_gives_gradients():
    """Not this package's use (its encoders are frozen), but a caller training through the encoder gets
    transformers' values and a gradient, not an out= error."""
    sam = _tiny_sam()
    sam.requires_grad_(True)
    pv = _pixels(sam)
    ref = sam.vision_encoder(pv).last_hidden_state  # (get_image_embeddings itself runs without grad)
    fa.use_sam_rel_pos_workspace(sam)
    got = sam.vision_encoder(pv).last_hidden_state
    assert got.requires_grad
    got.sum().backward()
    assert torch.equal(got, ref) and sam.vision_encoder.layers[1].attn.rel_pos_h.grad is not None
