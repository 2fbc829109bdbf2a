"""ROS-free pieces of the live graph: frame sources, stamp pairing, score smoothing, annotation."""
import numpy as np
import pytest

from conftest import require_shared
from emotion_ros.core.faces.annotate import draw_faces
from emotion_ros.core.frames.sources import SourceError, describe_source, open_source
from emotion_ros.core.emotion.smoothing import ScoreSmoother
from emotion_ros.core.stamp_pairing import StampPairer


def test_demo_source_is_finite_moving_and_sized():
    src = open_source('demo', 320, 240, demo_frames=12)
    frames = [src.read() for _ in range(13)]
    assert frames[-1] is None and all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames[:-1])
    assert np.abs(frames[0].astype(int) - frames[6].astype(int)).mean() > 2  # the camera moves
    src.rewind()
    np.testing.assert_array_equal(src.read(), frames[0])


def test_video_file_source_reads_every_frame():
    path = require_shared('media', 'head-pose-face-detection-male.mp4')
    src = open_source(str(path))
    assert src.info.kind == 'file' and src.info.fps == pytest.approx(12.0)
    n = 0
    while src.read() is not None:
        n += 1
    assert n == 62


def test_folder_source_skips_unreadable_files(tmp_path):
    import cv2
    for i in range(3):
        cv2.imwrite(str(tmp_path / f'{i}.png'), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / '1b.png').write_bytes(b'not a png')
    src = open_source(str(tmp_path), 60, 40)
    got = []
    while (f := src.read()) is not None:
        got.append(int(f[0, 0, 0]))
    assert got == [0, 50, 100] and [p.rsplit('/', 1)[1] for p in src.skipped] == ['1b.png']


@pytest.mark.parametrize('spec,kind', [('0', 'webcam'), ('/dev/video2', 'webcam'), ('rtsp://127.0.0.1/x', 'url'),
                                       ('demo', 'demo'), ('/x/*.png', 'folder'), ('clip.mp4', 'file')])
def test_describe_source(spec, kind):
    assert describe_source(spec).kind == kind


def test_missing_sources_raise_with_reason(tmp_path):
    with pytest.raises(SourceError, match='not found'):
        open_source(str(tmp_path / 'nope.mp4'))
    with pytest.raises(SourceError, match='no images'):
        open_source(str(tmp_path))


def test_pairer_pairs_in_either_order_and_evicts_older():
    p = StampPairer(max_images=3, max_faces=3)
    assert p.add_image((1, 0), 'img1') is None
    assert p.add_image((2, 0), 'img2') is None
    assert p.add_faces((2, 0), 'faces2') == ('img2', 'faces2')
    assert len(p) == 0 and p.dropped_images == 1  # img1's faces will never come
    assert p.add_faces((3, 0), 'faces3') is None
    assert p.add_image((3, 0), 'img3') == ('img3', 'faces3')
    for k in range(10, 15):
        p.add_image((k, 0), k)
    assert len(p) == 3 and p.dropped_images == 3


def test_smoother_time_constant_and_expiry():
    s = ScoreSmoother(time_constant_s=1.0, max_age_s=2.0)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(s.update('1', a, 0.0), a)
    mid = s.update('1', b, 1.0)
    assert mid[1] == pytest.approx(1 - np.exp(-1), rel=1e-5) and mid.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(s.update('', b, 1.0), b)  # untracked: raw
    np.testing.assert_allclose(s.update('1', a, 10.0), a)  # stale track restarts
    s.forget_older_than(20.0)
    assert len(s) == 0
    np.testing.assert_allclose(ScoreSmoother(0.0).update('1', b, 0.0), b)


def test_draw_faces_marks_the_box():
    img = np.zeros((100, 100, 3), np.uint8)
    out = draw_faces(img, [((10, 30, 40, 40), '7', 'happy', 0.9)])
    assert out[30:70, 10].any() and not img.any() and not out[90:, 90:].any()


def test_demo_crowd_source_has_n_heads_and_validates_n():
    src = open_source('demo:5', demo_frames=3)
    assert src.info.kind == 'demo' and '5 astronaut heads' in src.info.description
    frame = src.read()
    assert frame.shape == (480, 640, 3)
    with pytest.raises(SourceError, match='1 to 64'):
        open_source('demo:0')


@pytest.mark.parametrize('size,bound,expected', [
    ((1920, 1080), (640, 480), (640, 360)),   # 16:9 into 4:3: width binds, no stretch
    ((480, 270), (640, 480), (480, 270)),     # never enlarged
    ((640, 480), (0, 240), (320, 240)),       # one side bound
    ((1080, 1920), (640, 480), (270, 480)),   # portrait
    ((640, 480), (0, 0), (640, 480)),
])
def test_bounded_size_keeps_aspect_and_never_enlarges(size, bound, expected):
    from emotion_ros.core.frames.sources import bounded_size
    assert bounded_size(*size, *bound) == expected


def test_file_source_keeps_its_aspect_ratio_in_a_bound():
    path = require_shared('media', 'head-pose-face-detection-male.mp4')  # 480x270
    frame = open_source(str(path), 320, 320).read()
    assert frame.shape == (180, 320, 3)
    assert open_source('demo', 320, 320, demo_frames=1).read().shape == (240, 320, 3)
