"""One object followed through a live stream with a SAM 2 / EdgeTAM video model, in bounded memory.

`StreamingSession` drives `transformers`' streaming API (transformers 5.23,
`Sam2VideoModel.forward(inference_session, frame_idx, frame)`): an inference session created with no
video, a MASK prompt added on the seed frame (`add_mask_inputs` + `obj_with_new_inputs`, what
`Sam2VideoProcessor.process_new_mask_for_video_frame` does), then every new frame is passed as
``frame=`` with its own increasing ``frame_idx``. On the seed frame the model takes the mask as its
output (``_use_mask_as_output``: logits +10 inside / -10 outside, object score +10) and encodes it
as the conditioning memory; on later frames it runs memory attention, the mask decoder and the
memory encoder.

**What the model reads from the past** (``_prepare_memory_conditioned_features`` and helpers), for
frame t of one object:

- every conditioning (prompt) frame's ``maskmem_features`` / ``maskmem_pos_enc`` and
  ``object_pointer`` (``max_cond_frame_num`` = -1 in every published config: all of them);
- ``maskmem_features`` / ``maskmem_pos_enc`` of the non-conditioning frames t-1 .. t-(num_maskmem-1);
- ``object_pointer`` of the non-conditioning frames t-1 .. t-(max_object_pointers_in_encoder-1)
  (streaming mode does not clip this window to the video length).

Nothing else from earlier frames is read: ``pred_masks`` / ``high_res_masks`` of a stored frame are
only reused when the same frame index is run again, the pixel values and the vision-feature cache
only serve the frame being processed. Left alone, the session keeps all of them for every frame
(``processed_frames``, ``output_dict_per_obj``, ``frames_tracked_per_obj``): at 1024 px that is
~12 MB of pixels and ~4 MB of high-res mask logits per frame, gigabytes per minute at 30 Hz.

**Bound.** After every frame `_prune` keeps exactly what the next frame reads: the latest
conditioning frame (a re-seed starts a fresh session, so there is one), the last
max(num_maskmem, max_object_pointers) - 1 non-conditioning frames with only the keys read (memory
features for the last num_maskmem - 1, the object pointer for all), no pixels, no feature cache, no
per-frame bookkeeping. Stored frames <= 1 + max(num_maskmem, max_object_pointers) - 1 (16 for every
published checkpoint, 4 for the tiny models), whatever the stream length. The tracking output is
unchanged by the pruning (tested: identical logits with and without it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.loading import to_device
from ..models.trackers import TrackerModel

#: the session tracks one object, under this client-side id
OBJ_ID = 1
#: keys of a stored frame output that later frames read (the rest is dropped)
_MEMORY_KEYS = ("maskmem_features", "maskmem_pos_enc")
_POINTER_KEYS = ("object_pointer", "object_score_logits")


@dataclass
class FrameOutput:
    """The tracker's answer for one frame.

    Attributes:
        mask: (H, W) bool at the frame's original resolution (logits > 0).
        object_score: the model's object-presence logit for this frame (`object_score_logits`, from
            the mask decoder's ``pred_obj_score_head``): > 0 means SAM 2 judges the object visible
            (when <= 0 the model itself replaces the mask by "no object"); +10 on a seed frame.
        frame_index: the session's index of this frame.
        timings: seconds ('preprocess', 'model', 'postprocess', 'prune').
    """

    mask: np.ndarray
    object_score: float
    frame_index: int
    timings: dict[str, float] = field(default_factory=dict)


class StreamingSession:
    """Streaming single-object tracker over a `TrackerModel`; not thread-safe (one caller thread)."""

    def __init__(self, tracker: TrackerModel, prune: bool = True):
        self.tracker = tracker
        self.prune_enabled = prune
        self._session = None
        self._next_index = 0
        self._seed_index: int | None = None

    # state ---------------------------------------------------------------------------------------
    @property
    def seeded(self) -> bool:
        """True once a mask prompt was given (and not reset since)."""
        return self._seed_index is not None

    @property
    def seed_index(self) -> int | None:
        return self._seed_index

    @property
    def next_index(self) -> int:
        return self._next_index

    @property
    def memory_window(self) -> int:
        """Past non-conditioning frames kept: max(num_maskmem, max_object_pointers) - 1."""
        return max(self.tracker.num_maskmem, self.tracker.max_object_pointers) - 1

    def reset(self) -> None:
        """Forget the object and every memory (the frame counter keeps increasing)."""
        self._session = None
        self._seed_index = None

    # per frame -----------------------------------------------------------------------------------
    def seed(self, rgb: np.ndarray, mask: np.ndarray, frame_index: int | None = None,
             vision_features: tuple[list, list] | None = None) -> FrameOutput:
        """Start a fresh track: `mask` ((H, W) bool, same size as `rgb`) is the object on this frame.

        Args:
            rgb: (H, W, 3) uint8 frame the mask belongs to.
            frame_index: index to give this frame (default: the next one); an earlier index than the
                next is allowed (re-seeding from a grounding of an older snapshot frame): later frames
                keep the increasing counter, so the model sees the true temporal distance.
            vision_features: (vision_feats, vision_pos) of THIS frame from the same model's
                `get_image_features` (e.g. `Sam2Proposer.features_for`): placed in the session's
                vision-feature cache so the seed frame does not run the image encoder again.
        """
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask {mask.shape} does not match the frame {rgb.shape[:2]}")
        if not mask.any():
            raise ValueError("cannot seed a track with an empty mask")
        idx = self._next_index if frame_index is None else int(frame_index)
        self._session = self.tracker.new_inference_session()
        sess = self._session
        sess.video_height, sess.video_width = rgb.shape[:2]
        obj_idx = sess.obj_id_to_idx(OBJ_ID)
        sess.add_mask_inputs(obj_idx, idx, self.tracker.geometry.mask_to_prompt(mask))
        sess.obj_with_new_inputs = [OBJ_ID]
        if vision_features is not None:
            feats, pos = vision_features
            sess.cache.cache_vision_features(idx, {"vision_feats": list(feats), "vision_pos_embeds": list(pos)})
        out = self._run(rgb, idx)
        self._seed_index = idx
        return out

    def track(self, rgb: np.ndarray, frame_index: int | None = None) -> FrameOutput:
        """Follow the object into a new frame (rgb: (H, W, 3) uint8).

        Args:
            frame_index: this frame's index (default: the next one); never below the next index, so
                gaps (frames not given to the tracker) are allowed and keep the true temporal distance.
        """
        if not self.seeded:
            raise RuntimeError("StreamingSession.track() before seed()")
        idx = self._next_index if frame_index is None else int(frame_index)
        if idx < self._next_index:
            raise ValueError(f"frame index {idx} is not after the last tracked frame ({self._next_index - 1})")
        return self._run(rgb, idx)

    @torch.inference_mode()
    def _run(self, rgb: np.ndarray, idx: int) -> FrameOutput:
        t0 = time.perf_counter()
        pixels = to_device(self.tracker.geometry.frame_to_pixels(rgb), self.tracker.device, self.tracker.dtype)
        t1 = time.perf_counter()
        out = self.tracker.model(inference_session=self._session, frame_idx=idx, frame=pixels)
        t2 = time.perf_counter()
        logits = out.pred_masks[0, 0]  # (S/4, S/4) low-res logits of our one object
        score = float(out.object_score_logits.reshape(-1)[0].float())
        mask = self.tracker.geometry.logits_to_mask(logits, rgb.shape[:2])
        if not np.isfinite(score):  # never report a non-finite score
            score = -1e4
        t3 = time.perf_counter()
        if self.prune_enabled:
            self._prune(idx)
        t4 = time.perf_counter()
        self._next_index = max(self._next_index, idx + 1)
        return FrameOutput(mask, score, idx, {"preprocess": t1 - t0, "model": t2 - t1,
                                              "postprocess": t3 - t2, "prune": t4 - t3})

    # memory bound --------------------------------------------------------------------------------
    def _prune(self, current: int) -> None:
        """Keep only what frame ``current + 1`` will read (see the module docstring)."""
        sess = self._session
        if sess.processed_frames:
            sess.processed_frames.clear()
        sess.cache.clear_all()
        nxt = current + 1
        mem_window = self.tracker.num_maskmem - 1
        window = self.memory_window
        for obj_idx, outputs in sess.output_dict_per_obj.items():
            cond = outputs["cond_frame_outputs"]
            for k in sorted(cond)[:-1]:  # only the latest prompt frame is ours to keep
                del cond[k]
            for entry in cond.values():
                _keep_keys(entry, _MEMORY_KEYS + _POINTER_KEYS)
            non_cond = outputs["non_cond_frame_outputs"]
            for k in list(non_cond):
                age = nxt - k
                if age > window or age < 1:
                    del non_cond[k]
                elif age > mem_window:
                    _keep_keys(non_cond[k], _POINTER_KEYS)
                else:
                    _keep_keys(non_cond[k], _MEMORY_KEYS + _POINTER_KEYS)
            sess.frames_tracked_per_obj[obj_idx].clear()
            sess.mask_inputs_per_obj[obj_idx].clear()
            sess.point_inputs_per_obj[obj_idx].clear()

    def stored_frames(self) -> dict[str, int]:
        """How many frames each per-frame store of the inference session holds now."""
        sess = self._session
        if sess is None:
            return {"processed_frames": 0, "vision_features": 0, "cond_outputs": 0, "non_cond_outputs": 0,
                    "frames_tracked": 0, "mask_inputs": 0}
        outs = list(sess.output_dict_per_obj.values())
        return {
            "processed_frames": len(sess.processed_frames or {}),
            "vision_features": len(sess.cache._vision_features),
            "cond_outputs": sum(len(o["cond_frame_outputs"]) for o in outs),
            "non_cond_outputs": sum(len(o["non_cond_frame_outputs"]) for o in outs),
            "frames_tracked": sum(len(v) for v in sess.frames_tracked_per_obj.values()),
            "mask_inputs": sum(len(v) for v in sess.mask_inputs_per_obj.values()),
        }

    def state_bytes(self) -> int:
        """Bytes of tensor storage the inference session references (each storage counted once)."""
        if self._session is None:
            return 0
        sess = self._session
        seen: dict[int, int] = {}
        _collect_storages([sess.processed_frames, sess.cache._vision_features, sess.output_dict_per_obj,
                           sess.mask_inputs_per_obj, sess.point_inputs_per_obj], seen)
        return int(sum(seen.values()))


def _keep_keys(entry: dict, keep: tuple[str, ...]) -> None:
    for key in [k for k in entry if k not in keep]:
        del entry[key]


def _collect_storages(obj, seen: dict[int, int]) -> None:
    if isinstance(obj, torch.Tensor):
        st = obj.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    elif isinstance(obj, dict):
        for v in obj.values():
            _collect_storages(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _collect_storages(v, seen)
