"""Raw image buffers of every supported encoding convert to the right BGR pixels; bad buffers say why."""
import numpy as np
import pytest

from emotion_ros.core.frames.encoding import ImageDecodeError, bgr8_bytes, to_bgr8

BGR = np.array([[[10, 20, 30], [40, 50, 60], [70, 80, 90]],
                [[11, 21, 31], [41, 51, 61], [71, 81, 91]]], dtype=np.uint8)  # 2x3


def test_bgr8_roundtrip_and_padding():
    h, w, step, data = bgr8_bytes(BGR)
    assert (h, w, step) == (2, 3, 9)
    np.testing.assert_array_equal(to_bgr8('bgr8', h, w, step, data), BGR)
    padded = b''.join(BGR[r].tobytes() + b'\xff' * 7 for r in range(2))
    np.testing.assert_array_equal(to_bgr8('bgr8', 2, 3, 16, padded), BGR)


@pytest.mark.parametrize('encoding,make', [
    ('rgb8', lambda b: b[:, :, ::-1]),
    ('bgra8', lambda b: np.dstack([b, np.full(b.shape[:2], 255, np.uint8)])),
    ('rgba8', lambda b: np.dstack([b[:, :, ::-1], np.zeros(b.shape[:2], np.uint8)])),
])
def test_color_encodings(encoding, make):
    src = np.ascontiguousarray(make(BGR))
    out = to_bgr8(encoding, 2, 3, src.shape[1] * src.shape[2], src.tobytes())
    np.testing.assert_array_equal(out, BGR)


def test_mono8_and_16bit():
    gray = np.array([[0, 128, 255]], dtype=np.uint8)
    out = to_bgr8('mono8', 1, 3, 3, gray.tobytes())
    assert out.shape == (1, 3, 3) and (out[..., 0] == gray).all() and (out[..., 2] == gray).all()
    g16 = np.array([[0, 0x8000, 0xFFFF]], dtype='<u2')
    assert to_bgr8('mono16', 1, 3, 6, g16.tobytes())[0, :, 1].tolist() == [0, 128, 255]
    g16be = g16.astype('>u2')
    assert to_bgr8('16UC1', 1, 3, 6, g16be.tobytes(), is_bigendian=True)[0, :, 0].tolist() == [0, 128, 255]
    rgb16 = (BGR[:, :, ::-1].astype('<u2') << 8)
    np.testing.assert_array_equal(to_bgr8('rgb16', 2, 3, 18, rgb16.tobytes()), BGR)


@pytest.mark.parametrize('args,needle', [
    (('yuv422', 2, 3, 6, b'\0' * 12), 'unsupported encoding'),
    (('bgr8', 0, 0, 0, b''), 'empty image'),
    (('bgr8', 2, 3, 5, b'\0' * 18), 'step 5 is smaller'),
    (('bgr8', 2, 3, 9, b'\0' * 10), 'truncated data'),
])
def test_bad_buffers_raise_with_reason(args, needle):
    with pytest.raises(ImageDecodeError, match=needle):
        to_bgr8(*args)
