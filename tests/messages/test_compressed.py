"""image_transport's compressed / compressedDepth payloads (ros2_iterprime/messages/compressed.py).

Payloads come from real encoders (PIL's libjpeg-turbo and zlib; the compressedDepth header and the
32FC1 quantisation as compressed_depth_image_transport's codec.cpp writes them), checked against the
formulas of that codec; hostile payloads (truncated, empty, random, wrong format strings, declared
60000 x 60000) are refused with a reason, and the size check runs before any decoder is called.
"""
from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ros2_iterprime.messages import compressed as ci
from ros2_iterprime.messages.compressed import (
    CompressedImageError,
    compressed_format,
    decode_compressed,
    decode_compressed_depth,
    encode_compressed,
    encode_compressed_depth,
    probe,
)

PHOTO = Path(__file__).resolve().parents[2] / "data" / "coffee.jpg"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(PHOTO).convert("RGB").resize((640, 480)))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A well-formed PNG header (valid CRCs) declaring any size, with a tiny IDAT: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def jpeg_declaring(photo_jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF) is rewritten to declare another size."""
    data = bytearray(photo_jpeg)
    i = 2
    while True:
        marker, seg = data[i + 1], (data[i + 2] << 8) | data[i + 3]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5: i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + seg


# ------------------------------------------------------------------------------------------ compressed
def test_jpeg_as_image_transport_sends_it_decodes_to_rgb(photo):
    data = encode_compressed(photo, "jpeg", quality=95)
    fmt = compressed_format("rgb8", "jpeg")
    assert fmt == "rgb8; jpeg compressed bgr8"  # compressed_publisher.cpp: encoding + "; jpeg compressed " + bgr8
    out = decode_compressed(data, fmt)
    assert out.encoding == "rgb8" and out.source_encoding == "rgb8" and out.array.shape == (480, 640, 3)
    assert out.array.dtype == np.uint8 and out.array.flags.c_contiguous
    assert np.abs(out.array.astype(int) - photo.astype(int)).mean() < 3  # q95: small IDCT/quantisation error
    # channel order: the saucer is red, not blue
    saucer = out.array[380:420, 150:250].reshape(-1, 3).mean(0)
    assert saucer[0] > saucer[2] + 40
    # a bgr8 camera publishes the same file ("bgr8; jpeg compressed bgr8"): still RGB out
    assert np.array_equal(decode_compressed(data, "bgr8; jpeg compressed bgr8").array, out.array)
    # the older format string
    assert np.array_equal(decode_compressed(data, "jpeg").array, out.array)


def test_png_colour_gray_and_16_bit_decode_exactly(photo):
    for fmt, arr, enc in [
        (compressed_format("rgb8", "png"), photo, "rgb8"),
        (compressed_format("mono8", "png"), photo[:, :, 1].copy(), "mono8"),
        (compressed_format("mono16", "png"), (photo[:, :, 0].astype(np.uint16) * 257), "mono16"),
    ]:
        out = decode_compressed(encode_compressed(arr, "png"), fmt)
        assert out.encoding == enc and np.array_equal(out.array, arr), fmt
    assert compressed_format("mono8", "png") == "mono8; png compressed "   # mono: no target after the space
    assert compressed_format("bgr16", "png") == "bgr16; png compressed bgr16"
    rgba = np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])
    assert np.array_equal(decode_compressed(encode_compressed(rgba, "png"), "png").array, photo)  # alpha dropped
    pal = Image.fromarray(photo).quantize(16)
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    assert np.array_equal(decode_compressed(buf.getvalue(), "png").array, np.asarray(pal.convert("RGB")))


def test_gray_jpeg_stays_one_channel(photo):
    out = decode_compressed(encode_compressed(photo[:, :, 0].copy(), "jpeg"), "mono8; jpeg compressed mono8")
    assert out.encoding == "mono8" and out.array.shape == (480, 640)


# ------------------------------------------------------------------------------------------ compressedDepth
def test_16uc1_compressed_depth_round_trip_as_the_codec_writes_it():
    rng = np.random.default_rng(1)
    depth = rng.integers(0, 12000, (48, 64)).astype(np.uint16)
    fmt, data = encode_compressed_depth(depth, "16UC1")
    assert fmt == "16UC1; compressedDepth png"
    fmt_id, a, b = struct.unpack("<iff", data[:12])
    assert (fmt_id, a, b) == (0, 0.0, 0.0) and data[12:20] == b"\x89PNG\r\n\x1a\n"
    out = decode_compressed_depth(data, fmt)
    want = np.where(depth > 10000, 0, depth)  # the publisher zeroes values above depth_max (10 m)
    assert out.encoding == "16UC1" and out.array.dtype == np.uint16 and np.array_equal(out.array, want)
    # the rolling encoder leaves depthParam uninitialised for 16-bit images: the decoder must ignore it
    garbage = struct.pack("<iff", 0, 1e30, -7.5) + data[12:]
    assert np.array_equal(decode_compressed_depth(garbage, fmt).array, want)
    # older publishers: no ';' means png; the humble branch writes no codec after "compressedDepth"
    assert np.array_equal(decode_compressed_depth(data, "16UC1").array, want)
    assert np.array_equal(decode_compressed_depth(data, "16UC1; compressedDepth").array, want)


def test_32fc1_inverse_depth_quantisation_matches_codec_cpp():
    depth = np.array([[1.0, 2.5, 3.7, 0.5], [9.99, 10.0, np.nan, 0.0], [-1.0, np.inf, 0.2, 0.1]], np.float32)
    fmt, data = encode_compressed_depth(depth, "32FC1")
    assert fmt == "32FC1; compressedDepth png"
    _, a, b = struct.unpack("<iff", data[:12])
    assert a == np.float32(100 * 101) and b == np.float32(1 - np.float32(10100) / np.float32(10))  # A, B = -1009
    raw = np.asarray(Image.open(io.BytesIO(data[12:])))
    # v = (unsigned short)(A / d + B) for d < depth_max, else 0
    assert raw[0, 0] == 9091 and raw[0, 1] == 3031 and raw[0, 2] == 1720 and raw[0, 3] == 19191
    assert raw[1, 1] == 0 and raw[1, 2] == 0 and raw[2, 1] == 0  # at depth_max, NaN, inf
    assert raw[1, 3] == 0 and raw[2, 0] == 0 and raw[2, 3] == 0  # undefined in C++ (out of uint16): invalid here
    out = decode_compressed_depth(data, fmt).array
    assert out.dtype == np.float32
    # d = A / (v - B), in float32 as codec.cpp computes it
    assert out[0, 0] == np.float32(10100) / np.float32(9091 + 1009) == np.float32(1.0)
    assert out[0, 1] == np.float32(2.5)
    assert out[0, 2] == np.float32(10100) / (np.float32(1720) - np.float32(-1009))
    assert abs(out[0, 2] - 3.7) < 0.002 and abs(out[1, 0] - 9.99) < 0.05  # the quantisation step grows as d^2
    assert np.isnan(out[1, 1:3]).all() and np.isnan(out[2, [0, 1, 3]]).all()
    assert abs(out[2, 2] - 0.2) < 1e-4


def test_compressed_depth_refusals_name_the_reason():
    fmt, data = encode_compressed_depth(np.full((8, 8), 1000, np.uint16), "16UC1")
    cases = {
        "rvl": (data, "16UC1; compressedDepth rvl"),
        "16UC1 (mm) or 32FC1": (data, "8UC1; compressedDepth png"),
        "not a compressedDepth format": (data, "16UC1; png compressed "),
        "no room": (data[:12], fmt),
        "'compressed' payload, not 'compressedDepth'": (encode_compressed(np.zeros((8, 8), np.uint16), "png"), fmt),
        "16-bit grayscale": (data[:12] + encode_compressed(np.zeros((8, 8, 3), np.uint8), "png"), fmt),
        "quantisation parameters": (struct.pack("<iff", 0, float("nan"), 1.0) + data[12:], "32FC1; compressedDepth png"),
    }
    for reason, (payload, f) in cases.items():
        with pytest.raises(CompressedImageError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            decode_compressed_depth(payload, f)


# ------------------------------------------------------------------------------------------ hostile input
def test_declared_60000_by_60000_is_refused_before_any_decoder_runs(photo, monkeypatch):
    def never(*a, **k):
        raise AssertionError("a decoder ran on a payload whose size must be refused from its header")

    monkeypatch.setattr(ci, "_decode_pil", never)
    monkeypatch.setattr(ci, "_decode_jpeg", never)
    bomb_png = png_declaring(60000, 60000)
    bomb_jpeg = jpeg_declaring(encode_compressed(photo, "jpeg"), 60000, 60000)
    assert len(bomb_png) < 200
    for payload, fmt in [(bomb_png, "rgb8; png compressed bgr8"), (bomb_jpeg, "rgb8; jpeg compressed bgr8")]:
        t = time.perf_counter()
        with pytest.raises(CompressedImageError, match=r"60000x60000 .*decompression bomb"):
            decode_compressed(payload, fmt)
        assert time.perf_counter() - t < 0.5
    depth_bomb = struct.pack("<iff", 0, 0.0, 0.0) + png_declaring(60000, 60000, 16, 0)
    with pytest.raises(CompressedImageError, match="60000x60000"):
        decode_compressed_depth(depth_bomb, "16UC1; compressedDepth png")
    with pytest.raises(CompressedImageError, match="16385x1"):
        probe(png_declaring(16385, 1))  # one side too long, even with few pixels


def test_truncated_empty_random_and_mislabelled_payloads_get_a_reason(photo):
    jpeg, png = encode_compressed(photo, "jpeg"), encode_compressed(photo, "png")
    bad = {
        "empty payload": (b"", "rgb8; jpeg compressed bgr8"),
        "neither JPEG nor PNG": (b"\x00" * 1000, "jpeg"),
        "names no supported codec": (jpeg, "rgb8; tiff compressed bgr8"),
        "compressedDepth payload": (png, "16UC1; compressedDepth png"),
        "says png but the payload is a JPEG": (jpeg, "rgb8; png compressed bgr8"),
        "format is not a string": (jpeg, None),
    }
    for cut in (2, 20, 600, len(jpeg) // 2, len(jpeg) - 2):
        bad[f"jpeg cut at {cut}"] = (jpeg[:cut], "rgb8; jpeg compressed bgr8")
    for cut in (8, 30, 40, len(png) // 2, len(png) - 100):  # (without IEND alone a PNG is still whole)
        bad[f"png cut at {cut}"] = (png[:cut], "rgb8; png compressed bgr8")
    corrupt = bytearray(jpeg)
    corrupt[len(jpeg) // 2: len(jpeg) // 2 + 200] = b"\x00" * 200
    bad["jpeg with zeroed entropy data"] = (bytes(corrupt), "jpeg")
    for what, (payload, fmt) in bad.items():
        with pytest.raises(CompressedImageError) as err:
            decode_compressed(payload, fmt)
        assert str(err.value), what
        if not what.startswith(("jpeg cut", "png cut", "jpeg with")):
            assert what in str(err.value), (what, str(err.value))


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"]),
       body=st.binary(max_size=400),
       fmt=st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "mono8; png compressed ", "",
                            "16UC1; compressedDepth png", "32FC1; compressedDepth png", "\x00;\xff"]))
def test_fuzzed_payloads_raise_only_compressed_image_error(prefix, body, fmt):
    for fn in (decode_compressed, decode_compressed_depth):
        for payload in (prefix + body, b"\0" * 12 + prefix + body):
            try:
                out = fn(payload, fmt)
            except CompressedImageError as exc:
                assert str(exc)
            else:  # whatever decodes is a real, bounded image
                assert out.array.size > 0 and out.array.shape[0] * out.array.shape[1] <= ci.MAX_PIXELS


def test_jpeg_header_probe_reads_the_declared_size(photo):
    info = probe(encode_compressed(photo, "jpeg"))
    assert (info.codec, info.width, info.height, info.channels, info.bit_depth) == ("jpeg", 640, 480, 3, 8)
    info = probe(encode_compressed(photo[:, :, 0].copy().astype(np.uint16), "png"))
    assert (info.codec, info.width, info.height, info.bit_depth, info.color_type) == ("png", 640, 480, 16, 0)
