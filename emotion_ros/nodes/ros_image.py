"""sensor_msgs Image/CompressedImage <-> numpy BGR, without cv_bridge."""
from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from emotion_ros.core.image_encoding import ImageDecodeError, bgr8_bytes, to_bgr8


def image_to_bgr(msg: Image) -> np.ndarray:
    return to_bgr8(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


def compressed_to_bgr(msg: CompressedImage) -> np.ndarray:
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageDecodeError('empty CompressedImage')
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError(f'CompressedImage ({msg.format or "no format"}, {buf.size} bytes) does not decode')
    return img


def bgr_to_image(image: np.ndarray, header: Header) -> Image:
    h, w, step, data = bgr8_bytes(image)
    return Image(header=header, height=h, width=w, encoding='bgr8', is_bigendian=0, step=step, data=data)
