"""Read the pixel size a compressed image declares in its header, and refuse it before decoding.

Why: a few hundred bytes of JPEG or PNG can declare 65000x65000 pixels. OpenCV then either raises
(above its own 2^30-pixel limit) or allocates gigabytes and stalls for seconds. Reading the header
costs microseconds, so live frames (face_detector_node) and dataset images (`emotion-train import`)
are checked against `max_pixels` first. Only formats whose header we can read are decoded at all
(JPEG, PNG, WebP, BMP, TIFF, PNM/PAM); anything else is refused by name, not handed to a decoder.
"""
from __future__ import annotations

import os
import stat
import struct
from typing import NamedTuple, Optional

import cv2
import numpy as np

from emotion_ros.core.frames.encoding import ImageDecodeError

# 8K UHD: every real camera fits; the largest accepted image decodes to ~100 MB of BGR.
DEFAULT_MAX_PIXELS = 7680 * 4320
MAX_PIXELS_LIMIT = 2 ** 30  # OpenCV's own decoder limit (CV_IO_MAX_IMAGE_PIXELS): above it imdecode raises
MAX_FILE_BYTES = 256 * 1024 * 1024  # no photo of a face is larger; a bigger file is refused before it is read


class DeclaredSize(NamedTuple):
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _jpeg(b: bytes) -> Optional[DeclaredSize]:
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            raise ImageDecodeError(f'JPEG: no marker at byte {i}')
        marker = b[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:   # stand-alone markers
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        length = struct.unpack_from('>H', b, i + 2)[0]
        if length < 2:
            raise ImageDecodeError(f'JPEG: segment length {length} at byte {i}')
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(b):
                break
            height, width = struct.unpack_from('>HH', b, i + 5)
            if height == 0:
                raise ImageDecodeError('JPEG: height 0 in the frame header (defined later by DNL): refused')
            return DeclaredSize('jpeg', width, height)
        i += 2 + length
    raise ImageDecodeError('JPEG: no frame header (SOF) found')


def _png(b: bytes) -> DeclaredSize:
    if len(b) < 24 or b[12:16] != b'IHDR':
        raise ImageDecodeError('PNG: first chunk is not IHDR')
    width, height = struct.unpack_from('>II', b, 16)
    return DeclaredSize('png', width, height)


def _webp(b: bytes) -> DeclaredSize:
    chunk = b[12:16]
    if chunk == b'VP8X' and len(b) >= 30:
        width = 1 + int.from_bytes(b[24:27], 'little')
        height = 1 + int.from_bytes(b[27:30], 'little')
    elif chunk == b'VP8 ' and len(b) >= 30 and b[23:26] == b'\x9d\x01\x2a':
        width, height = (v & 0x3FFF for v in struct.unpack_from('<HH', b, 26))
    elif chunk == b'VP8L' and len(b) >= 25 and b[20] == 0x2F:
        bits = int.from_bytes(b[21:25], 'little')
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    else:
        raise ImageDecodeError(f'WebP: unreadable {chunk!r} header')
    return DeclaredSize('webp', width, height)


def _bmp(b: bytes) -> DeclaredSize:
    if len(b) < 26:
        raise ImageDecodeError('BMP: truncated header')
    dib = struct.unpack_from('<I', b, 14)[0]
    if dib == 12:
        width, height = struct.unpack_from('<HH', b, 18)
    else:
        width, height = struct.unpack_from('<ii', b, 18)
    return DeclaredSize('bmp', abs(width), abs(height))


_TIFF_TYPES = {3: ('H', 2), 4: ('I', 4)}


def _tiff(b: bytes) -> DeclaredSize:
    end = '<' if b[:2] == b'II' else '>'
    try:
        offset = struct.unpack_from(end + 'I', b, 4)[0]
        count = struct.unpack_from(end + 'H', b, offset)[0]
        size = {}
        for k in range(count):
            tag, typ, n = struct.unpack_from(end + 'HHI', b, offset + 2 + 12 * k)
            if tag in (256, 257) and typ in _TIFF_TYPES and n == 1:
                code, _ = _TIFF_TYPES[typ]
                size[tag] = struct.unpack_from(end + code, b, offset + 2 + 12 * k + 8)[0]
    except struct.error:
        raise ImageDecodeError('TIFF: truncated image file directory') from None
    if 256 not in size or 257 not in size:
        raise ImageDecodeError('TIFF: no ImageWidth/ImageLength in the first directory')
    return DeclaredSize('tiff', size[256], size[257])


def _pnm(b: bytes) -> DeclaredSize:
    head = b[:4096]
    if head[1:2] == b'7':   # PAM: WIDTH / HEIGHT lines
        fields = dict(line.split(None, 1) for line in head.split(b'\n')[1:]
                      if len(line.split(None, 1)) == 2 and not line.startswith(b'#'))
        try:
            return DeclaredSize('pam', int(fields[b'WIDTH']), int(fields[b'HEIGHT']))
        except (KeyError, ValueError):
            raise ImageDecodeError('PAM: no WIDTH/HEIGHT') from None
    tokens, i = [], 2
    while len(tokens) < 2 and i < len(head):
        c = head[i:i + 1]
        if c == b'#':
            nl = head.find(b'\n', i)
            i = len(head) if nl < 0 else nl + 1
        elif c.isspace():
            i += 1
        else:
            j = i
            while j < len(head) and head[j:j + 1].isdigit():
                j += 1
            if j == i:
                break
            tokens.append(int(head[i:j]))
            i = j
    if len(tokens) < 2:
        raise ImageDecodeError('PNM: no width/height in the header')
    return DeclaredSize('pnm', tokens[0], tokens[1])


def declared_size(data) -> DeclaredSize:
    """Format and width x height the header of `data` declares; ImageDecodeError for unknown/garbled headers."""
    b = bytes(data[:65536]) if not isinstance(data, bytes) else data[:65536]
    try:
        if b[:3] == b'\xff\xd8\xff':
            return _jpeg(b)
        if b[:8] == b'\x89PNG\r\n\x1a\n':
            return _png(b)
        if b[:4] == b'RIFF' and b[8:12] == b'WEBP':
            return _webp(b)
        if b[:2] == b'BM':
            return _bmp(b)
        if b[:4] in (b'II*\x00', b'MM\x00*'):
            return _tiff(b)
        if b[:1] == b'P' and b[1:2] in b'1234567' and len(b) > 2 and b[2:3].isspace():
            return _pnm(b)
    except struct.error:
        raise ImageDecodeError('truncated image header') from None
    raise ImageDecodeError(f'not a JPEG, PNG, WebP, BMP, TIFF or PNM image (starts {b[:8]!r})')


def check_declared_size(data, max_pixels: int = DEFAULT_MAX_PIXELS) -> DeclaredSize:
    """The declared size, or ImageDecodeError when it is empty or above `max_pixels` (nothing is decoded)."""
    size = declared_size(data)
    if size.width <= 0 or size.height <= 0:
        raise ImageDecodeError(f'{size.format} declares an empty {size.width}x{size.height} image')
    if size.pixels > max_pixels:
        raise ImageDecodeError(f'{size.format} declares {size.width}x{size.height} = {size.pixels} pixels, '
                               f'above max_pixels {max_pixels}: refused before decoding')
    return size


def decode_image(data, max_pixels: int = DEFAULT_MAX_PIXELS, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode a compressed image after checking its declared size; ImageDecodeError with the reason otherwise."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if buf.size == 0:
        raise ImageDecodeError('empty compressed image')
    size = check_declared_size(buf[:65536].tobytes(), max_pixels)
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise ImageDecodeError(f'{size.format} ({buf.size} bytes) does not decode: '
                               f'{str(exc).strip().splitlines()[-1][:200]}') from None
    if img is None or img.size == 0:
        raise ImageDecodeError(f'{size.format} ({buf.size} bytes) does not decode')
    if img.shape[0] * img.shape[1] > max_pixels:   # a decoder that read another size than the header said
        raise ImageDecodeError(f'{size.format} decoded to {img.shape[1]}x{img.shape[0]}, above max_pixels')
    return img


def read_image_file(path, max_pixels: int = DEFAULT_MAX_PIXELS, flags: int = cv2.IMREAD_COLOR,
                    max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """Decode an image file like `decode_image`; only a regular file of at most `max_bytes` is read (a FIFO
    or device named like an image would block or never end), opened once so it cannot be swapped meanwhile."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except OSError as exc:
        raise ImageDecodeError(f'cannot open: {exc.strerror or exc}') from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError('not a regular file')
        if info.st_size > max_bytes:
            raise ImageDecodeError(f'{info.st_size} bytes, larger than {max_bytes}')
        with os.fdopen(fd, 'rb', closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ImageDecodeError(f'cannot read: {exc.strerror or exc}') from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ImageDecodeError(f'more than {max_bytes} bytes')
    return decode_image(data, max_pixels, flags)


def max_pixels_reason(value: int) -> Optional[str]:
    """ParamSpec check shared by the node parameter and the import option."""
    if not 1 <= value <= MAX_PIXELS_LIMIT:
        return f'must be 1..{MAX_PIXELS_LIMIT} (OpenCV cannot decode more), got {value}'
    return None
