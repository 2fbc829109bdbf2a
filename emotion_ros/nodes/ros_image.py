"""sensor_msgs Image/CompressedImage <-> numpy BGR, without cv_bridge."""
from __future__ import annotations

import array

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from emotion_ros.core.frames.encoding import ImageDecodeError, to_bgr8
from emotion_ros.core.frames.header import DEFAULT_MAX_PIXELS, decode_image
from emotion_ros.core.log_text import untrusted


def image_to_bgr(msg: Image) -> np.ndarray:
    return to_bgr8(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


def compressed_to_bgr(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode after checking the size its header declares (emotion_ros.core.frames.header)."""
    try:
        return decode_image(msg.data, max_pixels, cv2.IMREAD_COLOR)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f'CompressedImage ({untrusted(msg.format, 40) or "no format"}): {exc}') from None


def bgr_to_image(image: np.ndarray, header: Header) -> Image:
    """One copy of the pixels (numpy -> the message's array.array): `Image(data=bytes)` made three
    (tobytes, array.array(bytes) in the constructor, then the setter's own), 0.6 ms per 640x480 frame."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageDecodeError(f'expected H×W×3 uint8, got {image.shape} {image.dtype}')
    h, w = image.shape[:2]
    msg = Image(header=header, height=h, width=w, encoding='bgr8', is_bigendian=0, step=w * 3)
    data = array.array('B')
    data.frombytes(np.ascontiguousarray(image))
    msg.data = data                       # an array.array('B') is taken as it is, not copied again
    return msg


def bgr_to_compressed(image: np.ndarray, header: Header, quality: int = 80) -> CompressedImage:
    """JPEG CompressedImage with image_transport's format string, so its `compressed` subscribers read it too."""
    ok, jpg = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageDecodeError(f'cannot JPEG-encode a {image.shape} image')
    msg = CompressedImage(header=header, format='bgr8; jpeg compressed bgr8')
    data = array.array('B')
    data.frombytes(jpg)
    msg.data = data
    return msg
