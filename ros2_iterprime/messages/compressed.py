"""Compressed camera payloads <-> numpy: image_transport's ``compressed`` and ``compressedDepth`` formats.

Pure functions over ``bytes`` + the ``format`` string of a sensor_msgs/CompressedImage; no ROS import, so
a bag reader or any other tool can use them as the node does. Every failure raises
:class:`CompressedImageError` whose message is the reason; nothing here crashes on hostile input, and the
declared image size is checked from the JPEG / PNG header BEFORE anything is decoded (decompression
bombs: a 100-byte PNG may declare 60000 x 60000 pixels).

The formats, as ros-perception/image_transport_plugins (branch rolling, commit 7404d77) writes and
reads them:

``compressed`` (compressed_image_transport, compressed_publisher.cpp / compressed_subscriber.cpp)
    ``format`` is ``"<encoding>; jpeg compressed <bgr8|mono8>"`` or ``"<encoding>; png compressed [bgr8|bgr16]"``
    (a mono PNG ends in ``"png compressed "``); older publishers wrote just ``"jpeg"`` / ``"png"``. The payload
    is a plain JPEG or PNG file whose colours are in true (RGB) order: OpenCV's encoder is given BGR.
``compressedDepth`` (compressed_depth_image_transport, codec.cpp + compression_common.h)
    ``format`` is ``"<16UC1|32FC1>; compressedDepth <png|rvl>"`` (the humble branch writes
    ``"<enc>; compressedDepth"``, and older publishers just ``"<enc>"``: both png). The payload starts with the
    12-byte ``ConfigHeader {enum compressionFormat format (int32, INV_DEPTH = 0); float depthParam[2];}``
    in the sender's byte order (little-endian on every ROS 2 platform), then a 16-bit grayscale PNG:
    16UC1 depth as is (values above ``depth_max`` m zeroed by the encoder), or for 32FC1 the quantised
    inverse depth ``v = (uint16)(A / d + B)`` with ``A = z0 (z0 + 1)``, ``B = 1 - A / depth_max``
    (``depthParam = {A, B}``, publisher defaults ``depth_max`` 10 m, ``depth_quantization`` z0 = 100),
    decoded as ``d = A / (v - B)`` and ``v = 0`` -> NaN. ``rvl`` payloads are refused (png only here).

Decoders, chosen by measurement (scripts/bench_decoders.py, README "Compressed camera streams"):
JPEG with simplejpeg (libjpeg-turbo; PIL when simplejpeg is not installed), PNG with PIL (zlib). JPEG
decoding is strict: a truncated or corrupt frame is refused, never returned half grey.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COMPRESSED_DEPTH_HEADER",
    "MAX_PIXELS",
    "MAX_SIDE",
    "CompressedImageError",
    "DecodedImage",
    "HeaderInfo",
    "compressed_format",
    "decode_compressed",
    "decode_compressed_depth",
    "encode_compressed",
    "encode_compressed_depth",
    "probe",
]

#: Largest decoded image accepted: 40 megapixels (8K UHD is 33 MP), at most 16384 pixels a side.
MAX_PIXELS = 40_000_000
MAX_SIDE = 16384
#: sizeof(compressed_depth_image_transport::ConfigHeader): int32 format + float depthParam[2].
COMPRESSED_DEPTH_HEADER = struct.Struct("<iff")
INV_DEPTH = 0  # compressionFormat::INV_DEPTH

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


class CompressedImageError(ValueError):
    """A compressed payload that cannot be used; the message says why."""


@dataclass(frozen=True)
class HeaderInfo:
    """What a JPEG / PNG header declares (read without decoding).

    Attributes:
        codec: 'jpeg' or 'png'.
        width, height: declared size in pixels.
        channels: components (JPEG) or samples per pixel (PNG: gray 1, gray+alpha 2, RGB 3, RGBA 4, palette 1).
        bit_depth: bits per sample (JPEG precision; PNG bit depth).
        color_type: PNG colour type (0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA); -1 for JPEG.
    """

    codec: str
    width: int
    height: int
    channels: int
    bit_depth: int
    color_type: int = -1


@dataclass(frozen=True)
class DecodedImage:
    """A decoded payload.

    Attributes:
        array: ``compressed``: (H, W, 3) uint8 RGB ('rgb8') or (H, W) uint8 ('mono8') / uint16 ('mono16');
            ``compressedDepth``: (H, W) uint16 millimetres ('16UC1', 0 = invalid) or float32 metres
            ('32FC1', NaN = invalid).
        encoding: the sensor_msgs/image_encodings name of ``array``.
        source_encoding: the encoding the publisher's ``format`` names ('' when it names none).
        info: the header the size was checked on.
    """

    array: np.ndarray
    encoding: str
    source_encoding: str
    info: HeaderInfo


def _bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if hasattr(data, "tobytes"):  # array.array('B') (rclpy's uint8[]), numpy
        return data.tobytes()
    if isinstance(data, (list, tuple)):
        try:
            return bytes(data)
        except (TypeError, ValueError) as exc:
            raise CompressedImageError(f"payload is not a byte sequence: {exc}") from exc
    raise CompressedImageError(f"unsupported payload container {type(data).__name__}")


def _quote(text: str, limit: int = 80) -> str:
    text = text if isinstance(text, str) else repr(text)
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _check_size(info: HeaderInfo, max_pixels: int) -> HeaderInfo:
    w, h = info.width, info.height
    if w <= 0 or h <= 0:
        raise CompressedImageError(f"{info.codec.upper()} header declares an empty image ({w}x{h})")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > max_pixels:
        raise CompressedImageError(
            f"{info.codec.upper()} header declares {w}x{h} pixels ({w * h / 1e6:.1f} MP): above the limit of "
            f"{max_pixels / 1e6:.0f} MP / {MAX_SIDE} px a side; refused before decoding (decompression bomb?)")
    return info


def _probe_jpeg(data: bytes) -> HeaderInfo:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise CompressedImageError(f"JPEG: no marker at byte {i} (0x{data[i]:02x}): corrupt header")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker == 0xD9:
            break
        seg = (data[i + 2] << 8) | data[i + 3]
        if seg < 2:
            raise CompressedImageError(f"JPEG: segment 0x{marker:02x} of invalid length {seg}")
        if marker in _SOF:
            if i + 10 > n:
                break
            precision = data[i + 4]
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return HeaderInfo("jpeg", width, height, data[i + 9], precision)
        if marker == 0xDA:  # start of scan before any frame header
            raise CompressedImageError("JPEG: scan data before the frame header (SOF)")
        i += 2 + seg
    raise CompressedImageError(f"JPEG: no frame header (SOF) in {n} bytes: truncated or not a JPEG")


def _probe_png(data: bytes) -> HeaderInfo:
    if len(data) < 33:
        raise CompressedImageError(f"PNG: {len(data)} bytes, shorter than signature + IHDR (33): truncated")
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise CompressedImageError(f"PNG: first chunk is {kind!r} of {length} bytes, not a 13-byte IHDR")
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    if color_type not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise CompressedImageError(f"PNG: invalid colour type {color_type} / bit depth {depth}")
    return HeaderInfo("png", width, height, _PNG_CHANNELS[color_type], depth, color_type)


def probe(data: Any, max_pixels: int = MAX_PIXELS) -> HeaderInfo:
    """The codec and declared size of a JPEG or PNG payload, from its header only; refuses absurd sizes.

    Raises:
        CompressedImageError: empty, unknown signature, corrupt header, or a declared size above
            ``max_pixels`` (or :data:`MAX_SIDE` a side).
    """
    data = _bytes(data)
    if not data:
        raise CompressedImageError("empty payload (0 bytes)")
    if data.startswith(_JPEG_MAGIC):
        info = _probe_jpeg(data)
    elif data.startswith(_PNG_MAGIC):
        info = _probe_png(data)
    else:
        raise CompressedImageError(f"payload of {len(data)} bytes is neither JPEG nor PNG "
                                   f"(starts with {data[:8].hex(' ')})")
    return _check_size(info, max_pixels)


# ------------------------------------------------------------------------------------------ decoders
def _decode_jpeg(data: bytes, info: HeaderInfo) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or (H, W) uint8 for a one-component JPEG."""
    gray = info.channels == 1
    try:
        import simplejpeg
    except ImportError:  # pragma: no cover - simplejpeg is pinned in requirements.txt
        return _decode_pil(data, info)
    try:
        out = simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "RGB")  # strict: warnings are errors
    except ValueError as exc:
        raise CompressedImageError(f"JPEG decoding failed: {exc}") from None
    return out[:, :, 0] if gray else out


def _decode_pil(data: bytes, info: HeaderInfo) -> np.ndarray:
    """PIL: (H, W) uint8 / uint16 for gray, (H, W, 3) uint8 RGB for anything with colour (alpha dropped)."""
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey frame
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.size != (info.width, info.height):
                raise CompressedImageError(f"{info.codec.upper()} decoded to {im.size[0]}x{im.size[1]}, "
                                           f"its header says {info.width}x{info.height}")
            mode = im.mode
            if mode.startswith("I;16"):
                return np.asarray(im).astype(np.uint16, copy=False)
            if mode == "I":
                return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)
            if mode in ("1", "L", "LA"):
                return np.asarray(im.convert("L"))  # gray (alpha dropped)
            return np.asarray(im.convert("RGB"))  # RGB, RGBA, palette, CMYK, ...
    except CompressedImageError:
        raise
    except Exception as exc:  # OSError (truncated), SyntaxError (broken PNG), zlib.error, ...
        raise CompressedImageError(f"{info.codec.upper()} decoding failed: {type(exc).__name__}: {exc}") from None


def _encoding_of(fmt: str) -> tuple[str, str]:
    """``format`` -> (source encoding or '', the rest in lower case)."""
    if not isinstance(fmt, str):
        raise CompressedImageError(f"format is not a string: {type(fmt).__name__}")
    if ";" in fmt:
        enc, rest = fmt.split(";", 1)
        return enc.strip(), rest.strip().lower()
    return "", fmt.strip().lower()


def decode_compressed(data: Any, fmt: str, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """A ``<image>/compressed`` payload (JPEG or PNG) -> RGB or mono array (see :class:`DecodedImage`).

    ``fmt`` must name jpeg or png (image_transport's ``"rgb8; jpeg compressed bgr8"``, ``"bgr8; png compressed
    bgr8"``, ``"mono8; png compressed "``, or the older ``"jpeg"`` / ``"png"``) and agree with the payload's
    signature. 16-bit colour is reduced to 8 bits; alpha is dropped; gray stays one channel (mono8 / mono16).
    """
    enc, rest = _encoding_of(fmt)
    if "compresseddepth" in rest:
        raise CompressedImageError(f"format {_quote(fmt)} is a compressedDepth payload; this input takes "
                                   f"image_transport 'compressed' (jpeg/png)")
    named = "jpeg" if ("jpeg" in rest or "jpg" in rest) else "png" if "png" in rest else ""
    if not named:
        raise CompressedImageError(f"format {_quote(fmt)} names no supported codec (jpeg or png, e.g. "
                                   f"'rgb8; jpeg compressed bgr8')")
    data = _bytes(data)
    info = probe(data, max_pixels)
    if info.codec != named:
        raise CompressedImageError(f"format {_quote(fmt)} says {named} but the payload is a {info.codec.upper()}")
    if info.codec == "jpeg":
        if info.channels not in (1, 3):
            a = _decode_pil(data, info)  # CMYK / YCCK: PIL converts them to RGB
        else:
            a = _decode_jpeg(data, info)
    else:
        a = _decode_pil(data, info)
    if a.ndim == 3 and a.dtype != np.uint8:
        a = (a >> 8).astype(np.uint8)
    if a.ndim == 2:
        encoding = "mono16" if a.dtype == np.uint16 else "mono8"
    else:
        encoding = "rgb8"
    return DecodedImage(np.ascontiguousarray(a), encoding, enc, info)


def decode_compressed_depth(data: Any, fmt: str, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """A ``<depth>/compressedDepth`` payload -> '16UC1' uint16 millimetres or '32FC1' float32 metres.

    As compressed_depth_image_transport's ``decodeCompressedDepthImage`` (codec.cpp): the encoding is the
    part of ``fmt`` before ``;``; 32-bit encodings carry the quantised inverse depth and the header's
    ``depthParam = {A, B}`` (d = A / (v - B), v = 0 -> NaN); other encodings carry the depth itself.
    """
    enc, rest = _encoding_of(fmt)
    if not enc and isinstance(fmt, str) and ";" not in fmt:  # older publishers: the encoding alone, png
        enc, rest = fmt.strip(), ""
    if rest and "compresseddepth" not in rest:
        raise CompressedImageError(f"format {_quote(fmt)} is not a compressedDepth format "
                                   f"(e.g. '16UC1; compressedDepth png')")
    if "rvl" in rest:
        raise CompressedImageError(f"format {_quote(fmt)}: the rvl codec is not supported (png only); set the "
                                   f"publisher's compressedDepth format to png")
    if enc not in ("16UC1", "mono16", "32FC1"):
        raise CompressedImageError(f"format {_quote(fmt)}: depth must be 16UC1 (mm) or 32FC1 (m), got "
                                   f"{_quote(enc)}")
    data = _bytes(data)
    if len(data) <= COMPRESSED_DEPTH_HEADER.size:
        raise CompressedImageError(f"payload of {len(data)} bytes: no room for the "
                                   f"{COMPRESSED_DEPTH_HEADER.size}-byte compressedDepth header and a PNG")
    _, quant_a, quant_b = COMPRESSED_DEPTH_HEADER.unpack_from(data, 0)
    png = data[COMPRESSED_DEPTH_HEADER.size:]
    if not png.startswith(_PNG_MAGIC):
        hint = (" (the payload itself starts with an image signature: a 'compressed' payload, not "
                "'compressedDepth'?)" if data.startswith((_PNG_MAGIC, _JPEG_MAGIC)) else "")
        raise CompressedImageError(f"no PNG after the {COMPRESSED_DEPTH_HEADER.size}-byte compressedDepth "
                                   f"header{hint}")
    info = _check_size(_probe_png(png), max_pixels)
    if info.color_type != 0 or info.bit_depth != 16:
        raise CompressedImageError(f"compressedDepth PNG must be 16-bit grayscale; it is {info.bit_depth}-bit "
                                   f"colour type {info.color_type}")
    raw = _decode_pil(png, info)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise CompressedImageError(f"compressedDepth PNG decoded to {raw.dtype} {raw.shape}, not 16-bit gray")
    if enc != "32FC1":
        return DecodedImage(raw, "16UC1", enc, info)
    a, b = np.float32(quant_a), np.float32(quant_b)
    if not (np.isfinite(a) and np.isfinite(b)) or a == 0:
        raise CompressedImageError(f"compressedDepth 32FC1 header has unusable quantisation parameters "
                                   f"A={quant_a!r}, B={quant_b!r}")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        depth = a / (raw.astype(np.float32) - b)
    depth[raw == 0] = np.nan
    return DecodedImage(depth.astype(np.float32, copy=False), "32FC1", enc, info)


# ------------------------------------------------------------------------------------------ encoders
def compressed_format(encoding: str, codec: str) -> str:
    """The ``format`` compressed_image_transport writes for an image of ``encoding`` compressed as ``codec``."""
    color = encoding.startswith(("rgb", "bgr"))
    if codec == "jpeg":
        return f"{encoding}; jpeg compressed {'bgr8' if color else 'mono8'}"
    if codec == "png":
        bits = 16 if encoding.endswith("16") else 8
        return f"{encoding}; png compressed {f'bgr{bits}' if color else ''}"
    raise ValueError(f"codec must be jpeg or png, got {codec!r}")


def encode_compressed(array: np.ndarray, codec: str = "png", quality: int = 95, png_level: int = 3) -> bytes:
    """(H, W) uint8/uint16 gray or (H, W, 3) uint8 RGB -> a JPEG (``quality``) or PNG (``png_level``) file.

    The defaults are compressed_image_transport's (jpeg_quality 95, png_level 3).
    """
    from PIL import Image

    a = np.ascontiguousarray(array)
    buf = io.BytesIO()
    if codec == "jpeg":
        if a.dtype != np.uint8:
            raise ValueError("JPEG needs uint8")
        Image.fromarray(a).save(buf, "JPEG", quality=int(quality))
    elif codec == "png":
        Image.fromarray(a).save(buf, "PNG", compress_level=int(png_level))
    else:
        raise ValueError(f"codec must be jpeg or png, got {codec!r}")
    return buf.getvalue()


def encode_compressed_depth(depth: np.ndarray, encoding: str, depth_max: float = 10.0,
                            depth_quantization: float = 100.0, png_level: int = 3) -> tuple[str, bytes]:
    """(format, payload) as compressed_depth_image_transport's ``encodeCompressedDepthImage`` writes them.

    16UC1: values above ``depth_max`` m (as uint16 mm) are zeroed; the header's depthParam is {0, 0}.
    32FC1: ``v = (uint16)(A / d + B)`` in float32 for ``d < depth_max`` (truncation, as C++'s conversion),
    else 0 (NaN too); where A / d + B leaves [0, 65535] (d <= 0, or closer than about A / 65536 m)
    the C++ conversion is undefined, and 0 (invalid) is written here.
    """
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {d.shape}")
    if encoding in ("16UC1", "mono16"):
        raw = d.astype(np.uint16, copy=True)
        raw[raw > np.uint16(np.float32(depth_max) * np.float32(1000.0))] = 0
        a = b = 0.0
    elif encoding == "32FC1":
        z0, dmax = np.float32(depth_quantization), np.float32(depth_max)
        a = np.float32(z0 * (z0 + np.float32(1.0)))
        b = np.float32(np.float32(1.0) - a / dmax)
        d32 = d.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            v = a / d32 + b
            ok = (d32 < dmax) & np.isfinite(v) & (v >= 0) & (v < 65536)
        raw = np.where(ok, np.trunc(np.where(ok, v, 0)), 0).astype(np.uint16)
    else:
        raise ValueError(f"encoding must be 16UC1 or 32FC1, got {encoding!r}")
    header = COMPRESSED_DEPTH_HEADER.pack(INV_DEPTH, float(a), float(b))
    return f"{encoding}; compressedDepth png", header + encode_compressed(raw, "png", png_level=png_level)
