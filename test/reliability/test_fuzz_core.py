"""Fuzz layer, ROS-free part (issue 18): the core functions every node and tool relies on, under
Hypothesis-generated hostile input. Fast (no nodes), so it runs many examples in every `make test`."""
import math
import time

import cv2
import numpy as np
import pytest

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from emotion_ros.core.emotion.model import normalise_scores, scored_rows  # noqa: E402
from emotion_ros.core.faces.crop import clip_box, crop_face  # noqa: E402
from emotion_ros.core.frames.encoding import ImageDecodeError  # noqa: E402
from emotion_ros.core.frames.header import check_declared_size, declared_size, decode_image  # noqa: E402
from emotion_ros.core.log_text import untrusted  # noqa: E402
from emotion_ros.core.emotion.smoothing import ScoreSmoother, valid_scores  # noqa: E402

FAST = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAGICS = [b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'RIFF\0\0\0\0WEBP', b'BM', b'II*\0', b'MM\0*', b'P5 ', b'P6\n',
          b'P7\n', b'']


# --- image headers ------------------------------------------------------------------------------------
@pytest.mark.parametrize('ext', ['.jpg', '.png', '.webp', '.bmp', '.tiff', '.ppm', '.pgm', '.pam'])
def test_declared_size_reads_every_format_opencv_writes(ext):
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, data = cv2.imencode(ext, img[:, :, 0] if ext == '.pgm' else img)
    size = declared_size(data.tobytes())
    assert (size.width, size.height) == (53, 37)
    assert decode_image(data).shape[:2] == (37, 53)
    with pytest.raises(ImageDecodeError, match='above max_pixels 100'):
        check_declared_size(data.tobytes(), max_pixels=100)


def test_pnm_comments_and_unknown_formats():
    assert declared_size(b'P5\n# made by hand\n# twice\n7 9\n255\n' + b'\0' * 63)[1:] == (7, 9)
    for data in (b'GIF89a\x10\x00\x10\x00', b'\x00\x00\x00\x0cjP  ', b'v/1\x01'):   # GIF, JPEG 2000, OpenEXR
        with pytest.raises(ImageDecodeError, match='not a JPEG, PNG'):
            declared_size(data)


@FAST
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=200))
def test_fuzz_declared_size_only_ever_raises_image_decode_error(magic, tail):
    try:
        size = declared_size(magic + tail)
    except ImageDecodeError:
        return
    assert size.width >= 0 and size.height >= 0


@settings(max_examples=150, deadline=None, database=None)
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=400), max_pixels=st.integers(1, 4096 * 4096))
def test_fuzz_decode_image_is_bounded_by_max_pixels(magic, tail, max_pixels):
    start = time.monotonic()
    try:
        img = decode_image(magic + tail, max_pixels)
    except ImageDecodeError:
        return
    finally:
        assert time.monotonic() - start < 5.0
    assert img.shape[0] * img.shape[1] <= max_pixels


# --- boxes --------------------------------------------------------------------------------------------
COORD = st.one_of(st.integers(-10, 700), st.sampled_from([0, 1, 20000, 200000, 2 ** 31, 2 ** 32 - 1, 10 ** 30]),
                  st.floats(allow_nan=True, allow_infinity=True))
IMAGE = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)


@FAST
@given(box=st.tuples(COORD, COORD, COORD, COORD), margin=st.floats(0.5, 4.0))
def test_fuzz_crop_face_returns_a_crop_or_a_value_error_quickly(box, margin):
    start = time.monotonic()
    try:
        crop = crop_face(IMAGE, box, margin=margin)
    except ValueError:
        crop = None
    assert time.monotonic() - start < 2.0
    if crop is not None:
        assert crop.shape == (48, 48) and crop.dtype == np.uint8
    try:
        x, y, w, h = clip_box(box, 160, 120)
    except ValueError:
        return
    assert 0 <= x and 0 <= y and w >= 1 and h >= 1 and x + w <= 160 and y + h <= 120


# --- scores -------------------------------------------------------------------------------------------
ROWS = st.lists(st.lists(st.floats(width=32), min_size=7, max_size=7), min_size=1, max_size=8)


@FAST
@given(raw=ROWS)
def test_fuzz_model_outputs_are_valid_rows_or_marked_unscorable(raw):
    probs = normalise_scores(np.array(raw, np.float32))
    ok = scored_rows(probs)
    for row, good in zip(probs, ok):
        if good:
            assert valid_scores(row) and abs(float(row.sum()) - 1.0) < 1e-4
        else:
            assert np.isnan(row).all()


@FAST
@given(ids=st.lists(st.sampled_from(['', '1', '1', '2', 'x\n']), min_size=1, max_size=6),
       seed=st.integers(0, 2 ** 16), frames=st.integers(1, 4))
def test_fuzz_smoothing_keeps_every_face_apart_and_valid(ids, seed, frames):
    rng = np.random.default_rng(seed)
    smoother = ScoreSmoother(0.3, 2.0)
    for f in range(frames):
        probs = [p / p.sum() for p in rng.random((len(ids), 7)).astype(np.float32) + 1e-3]
        out, repeated = smoother.update_frame(ids, probs, 0.1 * f)
        assert len(out) == len(ids)
        assert sorted(set(repeated)) == sorted({i for i in ids if i and ids.count(i) > 1})
        for p in out:
            assert valid_scores(p) and abs(float(np.sum(p)) - 1.0) < 1e-4
        if f == 0:   # first frame: nothing smoothed yet, so every face keeps its own scores
            assert all(np.allclose(a, b) for a, b in zip(out, probs))
    with pytest.raises(ValueError):
        smoother.update('1', np.full(7, math.nan, np.float32), 1.0)


# --- log text -----------------------------------------------------------------------------------------
@FAST
@given(text=st.text(max_size=3000), limit=st.integers(1, 300))
def test_fuzz_untrusted_is_one_printable_capped_line(text, limit):
    out = untrusted(text, limit)
    assert '\n' not in out and '\r' not in out and '\x1b' not in out
    assert all(c.isprintable() for c in out)
    assert len(out) <= limit + 24
    if len(text) <= limit and all(c.isprintable() for c in text):
        assert out == text
