#!/usr/bin/env python3
"""Decode time per 640x480 frame of the compressed camera payloads the node accepts, per decoder.

    python scripts/bench_decoders.py [--reps 50] [--json out.json]
    # to compare the candidates, install them into a scratch venv first:
    #   pip install numpy pillow simplejpeg opencv-python-headless pyspng imagecodecs

The frame is data/coffee.jpg (a real photograph) resized to 640x480, encoded as image_transport's
compressed publisher does by default (JPEG quality 95, PNG level 3; compressed_image_transport's
`jpeg_quality` / `png_level` defaults), plus a 16-bit depth PNG (a ray-cast-like ramp with sensor-like
noise, as compressedDepth carries it). Every decoder that is importable decodes the same bytes; each
result is checked against PIL's (identical for PNG; JPEG decoders may differ by IDCT rounding), and the
median of --reps decodes is reported, with the package's own path (header checks + decode + conversion,
`ros2_iterprime.messages.compressed`) when it is importable. One process, one run: compare the ratios.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def frames() -> dict[str, tuple[bytes, np.ndarray]]:
    """name -> (payload, the array PIL decodes it to)."""
    photo = Image.open(ROOT / "data" / "coffee.jpg").convert("RGB").resize((640, 480), Image.BICUBIC)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    depth = (800 + 2 * xx + yy + rng.normal(0, 4, (480, 640))).clip(0, 65535).astype(np.uint16)
    depth[100:200, 200:300] = 0  # a hole, as real sensors have
    out = {}
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=95)
    out["jpeg rgb8 q95"] = buf.getvalue()
    buf = io.BytesIO()
    photo.save(buf, "PNG", compress_level=3)
    out["png rgb8 level 3"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(depth).save(buf, "PNG", compress_level=3)  # PIL writes uint16 arrays as 16-bit gray
    out["png 16-bit depth level 3"] = buf.getvalue()
    return {k: (v, np.asarray(Image.open(io.BytesIO(v)))) for k, v in out.items()}


def decoders() -> dict[str, dict]:
    """name -> {kind: decode function} for every importable candidate."""
    found: dict[str, dict] = {}

    def pil(data):
        im = Image.open(io.BytesIO(data))
        return np.asarray(im)

    found["PIL " + Image.__version__] = {"jpeg": pil, "png": pil}
    try:
        import simplejpeg

        found[f"simplejpeg {simplejpeg.__version__}"] = {
            "jpeg": lambda d: simplejpeg.decode_jpeg(d, colorspace="RGB")}
    except ImportError:
        pass
    try:
        import cv2

        def cv(data):
            a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            return a[:, :, ::-1] if a.ndim == 3 else a  # BGR -> RGB (a view; PIL's order)

        found[f"opencv-headless {cv2.__version__}"] = {"jpeg": cv, "png": cv}
    except ImportError:
        pass
    try:
        import pyspng

        found["pyspng"] = {"png": lambda d: pyspng.load(d)}
    except ImportError:
        pass
    try:
        import imagecodecs

        found[f"imagecodecs {imagecodecs.__version__}"] = {"jpeg": imagecodecs.jpeg8_decode,
                                                           "png": imagecodecs.png_decode}
    except ImportError:
        pass
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG

        tj = TurboJPEG()
        found["PyTurboJPEG"] = {"jpeg": lambda d: tj.decode(d, pixel_format=TJPF_RGB)}
    except Exception:  # ImportError, or the libturbojpeg shared library is missing
        pass
    return found


def package_path():
    """The node's own decode path, when the package is importable."""
    try:
        sys.path.insert(0, str(ROOT))
        from ros2_iterprime.messages.compressed import decode_compressed, decode_compressed_depth
    except ImportError:
        return None

    def run(name, data):
        if "depth" in name:
            return decode_compressed_depth(b"\0" * 12 + data, "16UC1; compressedDepth png").array
        return decode_compressed(data, "rgb8; jpeg compressed bgr8" if "jpeg" in name
                                 else "rgb8; png compressed bgr8").array

    return run


def median_ms(fn, data, reps: int) -> float:
    fn(data)  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(data)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    fr, decs, own = frames(), decoders(), package_path()
    results: dict[str, dict[str, float]] = {}
    for name, (data, want) in fr.items():
        kind = "jpeg" if name.startswith("jpeg") else "png"
        row = {}
        for dec, fns in decs.items():
            if kind not in fns:
                continue
            got = np.asarray(fns[kind](data))
            if got.shape != want.shape:
                print(f"  {dec} {name}: shape {got.shape} != {want.shape}; skipped", file=sys.stderr)
                continue
            diff = np.abs(got.astype(np.int32) - want.astype(np.int32)).max()
            if kind == "png" and diff != 0:
                print(f"  {dec} {name}: differs from PIL by {diff}; skipped", file=sys.stderr)
                continue
            row[dec] = median_ms(fns[kind], data, args.reps)
        if own is not None:
            row["ros2_iterprime.messages.compressed (as the node uses it)"] = median_ms(
                lambda d, n=name: own(n, d), data, args.reps)
        results[name] = row
    print(f"decode time per 640x480 frame, median of {args.reps} (ms); {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {load:.2f}, Python {platform.python_version()}")
    for name, row in results.items():
        size = len(fr[name][0])
        best = min((v for k, v in row.items() if not k.startswith("ros2_iterprime")), default=float("nan"))
        print(f"\n{name} ({size / 1024:.0f} KiB)")
        for dec, ms in sorted(row.items(), key=lambda kv: kv[1]):
            print(f"  {ms:7.2f} ms  x{ms / best:4.2f}  {dec}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": "python scripts/bench_decoders.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "load_average_at_start": round(load, 2), "reps": args.reps, "ms": results,
            "bytes": {k: len(v[0]) for k, v in fr.items()}}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
