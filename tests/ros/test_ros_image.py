"""Unit tests of the cv_bridge-free sensor_msgs/Image conversions (no DDS, no rclpy needed)."""
from __future__ import annotations

import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros2_iterprime.ros.image import (
    ENCODINGS,
    ImageConversionError,
    depth_to_metres,
    image_to_numpy,
    msg_to_numpy,
    numpy_to_fields,
    to_rgb8,
)


class FakeImage:
    """Duck-typed sensor_msgs/Image (the module must not need rclpy)."""

    def __init__(self, **kw):
        self.header = None
        for k, v in kw.items():
            setattr(self, k, v)


def _random(encoding, h, w, rng):
    enc = ENCODINGS[encoding]
    shape = (h, w) if enc.channels == 1 else (h, w, enc.channels)
    if enc.dtype == np.float32:
        return rng.standard_normal(shape).astype(np.float32)
    return rng.integers(0, np.iinfo(enc.dtype).max, size=shape, endpoint=True).astype(enc.dtype)


def _pack(a, encoding, pad=0, bigendian=False):
    """Encode by hand (independent of the module): rows of `pad` extra bytes, chosen byte order."""
    enc = ENCODINGS[encoding]
    dt = enc.dtype.newbyteorder(">" if bigendian else "<")
    h, w = a.shape[:2]
    row = w * enc.channels * enc.dtype.itemsize
    out = bytearray()
    for r in range(h):
        out += np.ascontiguousarray(a[r]).astype(dt).tobytes() + bytes([0xAB]) * pad
    return dict(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=row + pad,
                data=bytes(out))


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 1, 3, 64])
@pytest.mark.parametrize("bigendian", [False, True])
def test_decode_every_encoding_with_padding_and_endianness(encoding, pad, bigendian):
    rng = np.random.default_rng(0)
    a = _random(encoding, 5, 7, rng)
    out = msg_to_numpy(FakeImage(**_pack(a, encoding, pad, bigendian)))
    assert out.dtype == ENCODINGS[encoding].dtype and out.dtype.isnative
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_fields_round_trip(encoding):
    a = _random(encoding, 4, 6, np.random.default_rng(1))
    f = numpy_to_fields(a, encoding)
    enc = ENCODINGS[encoding]
    assert f["step"] == 6 * enc.channels * enc.dtype.itemsize and f["is_bigendian"] == 0
    assert isinstance(f["data"], array.array) and len(f["data"]) == f["step"] * 4
    np.testing.assert_array_equal(image_to_numpy(**f), a)


def test_last_row_padding_may_be_omitted_and_data_may_be_list():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    f = _pack(a, "mono8", pad=2)
    f["data"] = list(f["data"][:-2])  # no trailing padding, a list like some publishers send
    np.testing.assert_array_equal(image_to_numpy(**f), a)


def test_to_rgb8_channel_orders():
    rgb = np.random.default_rng(2).integers(0, 255, (3, 4, 3), endpoint=True).astype(np.uint8)
    np.testing.assert_array_equal(to_rgb8(rgb, "rgb8"), rgb)
    np.testing.assert_array_equal(to_rgb8(rgb[:, :, ::-1], "bgr8"), rgb)
    alpha = np.full((3, 4, 1), 7, np.uint8)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb, alpha], 2), "rgba8"), rgb)
    np.testing.assert_array_equal(to_rgb8(np.concatenate([rgb[:, :, ::-1], alpha], 2), "bgra8"), rgb)
    g = rgb[:, :, 0]
    out = to_rgb8(g, "mono8")
    assert out.shape == (3, 4, 3) and (out == g[:, :, None]).all()


def test_to_rgb8_stretches_16bit_and_float_ignoring_nan():
    d = np.array([[0, 1000], [2000, 4000]], np.uint16)
    out = to_rgb8(d, "16UC1")
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0 and out[1, 1, 0] == 255
    f = np.array([[np.nan, 1.0], [np.inf, 3.0]], np.float32)
    out = to_rgb8(f, "32FC1")
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 0 and out[1, 1, 0] == 255
    assert to_rgb8(np.full((2, 2), np.nan, np.float32), "32FC1").max() == 0


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(height=4, width=4, encoding="rgb8", is_bigendian=0, step=11, data=bytes(48)), "step"),
        (dict(height=4, width=4, encoding="rgb8", is_bigendian=0, step=12, data=bytes(47)), "too short"),
        (dict(height=4, width=4, encoding="yuv422", is_bigendian=0, step=8, data=bytes(32)), "unsupported"),
        (dict(height=0, width=0, encoding="rgb8", is_bigendian=0, step=0, data=b""), "empty"),
        (dict(height=-1, width=4, encoding="rgb8", is_bigendian=0, step=12, data=bytes(12)), "empty"),
        (dict(height=100000, width=100000, encoding="rgb8", is_bigendian=0, step=300000, data=bytes(100)),
         "too large"),
        (dict(height=20000, width=10000, encoding="mono8", is_bigendian=0, step=10000, data=bytes(100)),
         "too short"),
        (dict(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=object()), "container"),
    ],
)
def test_malformed_images_raise_clear_errors(fields, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_numpy(**fields)


def test_not_an_image():
    with pytest.raises(ImageConversionError, match="not a sensor_msgs/Image"):
        msg_to_numpy(object())


def test_numpy_to_fields_rejects_wrong_shapes():
    with pytest.raises(ImageConversionError):
        numpy_to_fields(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError):
        numpy_to_fields(np.zeros((2, 2, 3), np.uint8), "mono8")
    with pytest.raises(ImageConversionError):
        numpy_to_fields(np.zeros((2, 2), np.uint8), "nv12")
    # (H, W, 1) is accepted for single-channel encodings
    assert numpy_to_fields(np.zeros((2, 3, 1), np.uint8), "mono8")["width"] == 3


def test_depth_to_metres():
    mm = np.array([[0, 1000], [1500, 65535]], np.uint16)
    m = depth_to_metres(mm, "16UC1")
    assert np.isnan(m[0, 0]) and m[0, 1] == pytest.approx(1.0) and m[1, 0] == pytest.approx(1.5)
    assert depth_to_metres(mm, "16UC1", depth_scale=0.0001)[0, 1] == pytest.approx(0.1)
    f = np.array([[np.nan, np.inf], [-1.0, 2.5]], np.float32)
    m = depth_to_metres(f, "32FC1")
    assert np.isnan(m[0]).all() and np.isnan(m[1, 0]) and m[1, 1] == 2.5
    assert not np.isnan(f[1, 1])  # input untouched
    with pytest.raises(ImageConversionError):
        depth_to_metres(np.zeros((2, 2, 3), np.uint8), "rgb8")


def test_real_sensor_msgs_image_round_trip():
    pytest.importorskip("sensor_msgs.msg")
    from std_msgs.msg import Header

    from ros2_iterprime.ros.image import numpy_to_msg

    a = np.random.default_rng(3).integers(0, 65535, (48, 64), endpoint=True).astype(np.uint16)
    h = Header(frame_id="cam_optical")
    msg = numpy_to_msg(a, "16UC1", header=h)
    assert msg.header.frame_id == "cam_optical" and msg.step == 128
    np.testing.assert_array_equal(msg_to_numpy(msg), a)


@st.composite
def _images(draw):
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    pad = draw(st.integers(0, 9))
    big = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return encoding, _random(encoding, h, w, np.random.default_rng(seed)), pad, big


@settings(max_examples=200, deadline=None)
@given(_images())
def test_hypothesis_round_trip(case):
    encoding, a, pad, big = case
    packed = _pack(a, encoding, pad, big)
    out = image_to_numpy(**packed)
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(image_to_numpy(**numpy_to_fields(out, encoding)), a)


@settings(max_examples=200, deadline=None)
@given(
    h=st.integers(-3, 40), w=st.integers(-3, 40), step=st.integers(-3, 200),
    n=st.integers(0, 400), encoding=st.sampled_from(sorted(ENCODINGS) + ["bayer_rggb8", ""]),
    big=st.booleans(),
)
def test_hypothesis_arbitrary_headers_never_crash(h, w, step, n, encoding, big):
    """Any header/data combination either decodes to the declared shape or raises ImageConversionError."""
    try:
        out = image_to_numpy(h, w, encoding, big, step, bytes(n))
    except ImageConversionError:
        return
    assert out.shape[:2] == (h, w)
