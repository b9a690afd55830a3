"""Image headers read by hand: format from the magic bytes, width, height and channels, before any decoder runs.

The image codecs call :func:`check_image_header` on every base-image member, so a member that is
not in the format its codec declares, or whose header claims another size or channel count than
the index, is refused before Pillow allocates anything. No process-global Pillow limit is read or
changed: the declared shape is the bound.
"""

from __future__ import annotations

import struct

from .errors import CodecError, FormatError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_COLOR_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # PNG colour type -> channels after decoding


def _png(data: bytes) -> tuple[int, int, int]:
    """(width, height, channels) from the IHDR chunk, which must come first."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ValueError("no IHDR chunk after the signature")
    w, h, depth, color = struct.unpack(">IIBB", data[16:26])
    if depth != 8 or color not in (0, 2):
        raise ValueError(f"bit depth {depth}, colour type {color}; infer-data writes 8-bit grayscale or RGB")
    return w, h, _PNG_COLOR_CHANNELS[color]


def _jpeg(data: bytes) -> tuple[int, int, int]:
    """(width, height, components) from the first SOF segment, walking segments from the start."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 10 > len(data):
                break
            h, w, comps = struct.unpack(">HHB", data[pos + 5 : pos + 10])
            return w, h, comps
        if marker in (0xDA, 0xD9) or length < 2:
            break
        pos += 2 + length
    raise ValueError("no frame header (SOF) before the image data")


def _webp(data: bytes) -> tuple[int, int, int]:
    """(width, height, 3) from the first chunk (VP8, VP8L or VP8X); WebP decodes to RGB here."""
    if len(data) < 30 or data[8:12] != b"WEBP":
        raise ValueError("not a RIFF WEBP file")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF, 3
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 3
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1, 3
    raise ValueError(f"unknown first chunk {chunk!r}")


_FORMATS = {"png": (PNG_MAGIC, _png), "jpg": (JPEG_MAGIC, _jpeg), "webp": (b"RIFF", _webp)}


def check_image_header(data: bytes, ext: str, chw: tuple[int, int, int], where: str) -> None:
    """Check that ``data`` is a ``ext`` image (``png``, ``jpg``, ``webp``) of exactly C x H x W.

    Args:
        chw: the declared (channels, height, width) of the decoded member.

    Raises:
        CodecError: the bytes are not that format, or its header is unreadable.
        FormatError: the header declares another width, height or channel count.
    """
    magic, parse = _FORMATS[ext]
    if not data.startswith(magic):
        raise CodecError(f"{where}: not a {ext.upper()} file (magic bytes {data[:8]!r}); the shard does not match its codec")
    try:
        w, h, c = parse(data)
    except (ValueError, struct.error, IndexError) as exc:
        raise CodecError(f"{where}: unreadable {ext.upper()} header ({exc}); re-download the shard") from None
    want_c, want_h, want_w = chw
    if (w, h) != (want_w, want_h):
        raise FormatError(f"{where}: image is {w}x{h}, the index declares {want_w}x{want_h}")
    if c != want_c:
        raise FormatError(f"{where}: image has {c} channels, the index declares {want_c}")
