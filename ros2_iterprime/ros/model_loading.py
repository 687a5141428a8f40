"""Loading the models a node's parameters name, and the one-line reasons given when that fails.

Called at configure (and, for the tracker, when ``mode`` becomes ``track``). The library does the
loading (`..grounding.segmenter.load_segmenter`, `..models.trackers.load_tracker`); this module maps
the parameters to its arguments and its errors to text a robot integrator can act on.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import ModelNotFoundError
from .log import quote
from .track import tracker_id

__all__ = ["load_error_text", "load_segmenter_for", "load_tracker_for"]


def load_segmenter_for(setting: Callable[[str], Any], logger):
    """The `ReferringSegmenter` the parameters describe (model, vlm, sam, device, dtype, method settings)."""
    from ..grounding.segmenter import SegmenterConfig, load_segmenter

    model, vlm, sam = setting("model"), setting("vlm") or None, setting("sam") or None
    cfg = SegmenterConfig(iterations=setting("iterations"), alpha=setting("alpha"),
                          pwem_mode=setting("pwem_mode"), proposals=setting("proposals"),
                          points_per_side=setting("points_per_side"),
                          proposals_model=setting("proposals_model"))
    kw = {"device": setting("device"), "dtype": setting("dtype")}
    if setting("local_files_only"):
        kw["local_files_only"] = True
    what = model + (f" (vlm={vlm})" if vlm else "") + (f" (sam={sam})" if sam else "")
    logger.info(f"loading model '{what}' on device '{kw['device']}' ...")
    t0 = time.perf_counter()
    seg = load_segmenter(model, vlm=vlm, sam=sam, config=cfg, **kw)
    dev = getattr(getattr(seg, "models", None), "device", kw["device"])
    logger.info(f"model '{what}' loaded in {time.perf_counter() - t0:.2f} s on {dev}")
    return seg


def load_tracker_for(setting: Callable[[str], Any], logger):
    """The tracker model for mode track (None: share the segmenter's SAM 2.1 proposal model)."""
    from ..models.mask2former import is_mask2former
    from ..models.trackers import load_tracker

    tm, pm = setting("tracker_model").strip(), setting("proposals_model")
    if pm != "sam" and not is_mask2former(pm) and tm in ("", pm):  # a Mask2Former is no video model
        logger.info(f"tracker: sharing the proposal model {quote(pm)} (one image encoding per grounding frame)")
        if setting("tracker_image_size") or setting("tracker_memory_frames"):
            logger.warning("tracker_image_size / tracker_memory_frames are not applied to a shared proposal model "
                           "(they would change the grounding's proposals too); set tracker_model to load its own")
        return None
    tid = tracker_id(tm, setting("model"))
    logger.info(f"loading tracker {quote(tid)} ...")
    t0 = time.perf_counter()
    kw = {"local_files_only": True} if setting("local_files_only") else {}
    model = load_tracker(tid, device=setting("device"), dtype=setting("dtype"),
                         image_size=setting("tracker_image_size") or None,
                         memory_frames=setting("tracker_memory_frames") or None, **kw)
    logger.info(f"tracker {quote(tid)} loaded in {time.perf_counter() - t0:.2f} s")
    return model


def load_error_text(exc: BaseException, what: str = "model") -> str:
    """The one FATAL/ERROR line for a failed load: what failed and the parameters that fix it."""
    if what == "tracker":
        return (f"cannot load the tracker for mode track ({type(exc).__name__}: {exc}). Set -p tracker_model:=<id "
                f"or dir> (fetch it with `ros2_iterprime download --tracker <id>`), -p tracker_model:=tiny-random "
                f"for a weight-free smoke test, or use another mode.")
    if isinstance(exc, ModelNotFoundError):
        return (f"cannot load the model: {exc} (node parameters: -p vlm:=<cached id or folder from `ros2_iterprime "
                f"download --to DIR`>, -p sam:=<same>, or -p model:=tiny-random)")
    return (f"cannot load the model ({type(exc).__name__}: {exc}). Check the `model`/`vlm`/`sam` parameters; "
            f"fetch real weights with `ros2_iterprime download` (or use model:=tiny-random for a weight-free "
            f"smoke test).")
