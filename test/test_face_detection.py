"""Every detector backend on real faces (a clip, the astronaut portrait) and on awkward inputs."""
import cv2
import numpy as np
import pytest

from conftest import require_shared
from emotion_ros.core.face_detection import BACKENDS, DEFAULT_BACKEND, FaceBox, FaceDetector, create_detector

ASTRONAUT_FACE = (178, 63, 89, 112)


@pytest.fixture(scope='module', params=BACKENDS)
def detector(request):
    return create_detector(request.param)


@pytest.fixture(scope='module')
def astronaut():
    from skimage import data
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope='module')
def male_frames():
    path = require_shared('media', 'head-pose-face-detection-male.mp4')
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) >= 30, f'{path} decoded to only {len(frames)} frames'
    return frames


def contains_centre(box: FaceBox, region) -> bool:
    x, y, w, h = region
    return x <= box.x + box.w / 2 <= x + w and y <= box.y + box.h / 2 <= y + h


def assert_valid(boxes, image):
    height, width = image.shape[:2]
    for b in boxes:
        assert isinstance(b, FaceBox)
        assert all(isinstance(v, int) for v in (b.x, b.y, b.w, b.h))
        assert 0 <= b.x and 0 <= b.y and b.w > 0 and b.h > 0
        assert b.x + b.w <= width and b.y + b.h <= height
        assert 0.0 <= b.score <= 1.0
    assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)


def test_api_constants():
    assert BACKENDS == ('haar', 'yunet', 'blazeface')
    assert DEFAULT_BACKEND in BACKENDS


def test_detector_is_a_face_detector_with_its_name(detector):
    assert isinstance(detector, FaceDetector)
    assert detector.name in BACKENDS


def test_finds_the_man_in_every_sampled_frame(detector, male_frames):
    """One man, frontal, centre of a 480x270 clip: his face box centre must sit in the middle third."""
    for index in range(0, len(male_frames), 5):
        frame = male_frames[index]
        boxes = detector.detect(frame)
        assert_valid(boxes, frame)
        assert boxes, f'{detector.name}: no face in frame {index}'
        best = boxes[0]
        assert contains_centre(best, (160, 20, 160, 160)), f'{detector.name}: frame {index}: {best}'
        assert 50 <= best.w <= 140, f'{detector.name}: frame {index}: implausible face width {best}'


def test_finds_the_astronaut(detector, astronaut):
    boxes = detector.detect(astronaut)
    assert_valid(boxes, astronaut)
    assert any(contains_centre(b, ASTRONAUT_FACE) for b in boxes), f'{detector.name}: {boxes}'


def test_gray_input_finds_the_astronaut(detector, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    boxes = detector.detect(gray)
    assert_valid(boxes, gray)
    assert any(contains_centre(b, ASTRONAUT_FACE) for b in boxes), f'{detector.name}: {boxes}'


def test_huge_frame_boxes_in_input_pixels(detector, astronaut):
    """A 4000x3000 frame is downscaled inside; the box must come back in the big frame's pixels."""
    huge = cv2.resize(astronaut, (4000, 3000), interpolation=cv2.INTER_LINEAR)
    boxes = detector.detect(huge)
    assert_valid(boxes, huge)
    sx, sy = 4000 / 512, 3000 / 512
    x, y, w, h = ASTRONAUT_FACE
    region = (x * sx, y * sy, w * sx, h * sy)
    assert any(contains_centre(b, region) and b.w > 400 for b in boxes), f'{detector.name}: {boxes}'


@pytest.mark.parametrize('shape', [(0, 0, 3), (0, 0), (0, 640, 3), (480, 0), (1, 1, 3), (3, 5), (7, 7, 3)])
def test_empty_and_tiny_images_give_no_faces(detector, shape):
    assert detector.detect(np.zeros(shape, np.uint8)) == []


def test_blank_frame_gives_no_faces(detector):
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []


def test_single_channel_and_bgra_accepted(detector, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    assert detector.detect(gray[:, :, None])
    assert detector.detect(cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA))


def test_non_contiguous_view_accepted(detector, astronaut):
    padded = np.zeros((600, 600, 3), np.uint8)
    padded[:512, :512] = astronaut
    assert detector.detect(padded[:512, :512])


def test_bad_image_rejected(detector):
    with pytest.raises(ValueError, match='uint8'):
        detector.detect(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match='shape'):
        detector.detect(np.zeros((64, 64, 2), np.uint8))


def test_min_score_filters(astronaut):
    scores = [b.score for b in create_detector('yunet', min_score=0.0).detect(astronaut)]
    assert scores and all(b.score >= 0.99 for b in create_detector('yunet', min_score=0.99).detect(astronaut))
    assert create_detector('blazeface', min_score=1.0).detect(astronaut) == []


def test_unknown_backend_error_names_the_choices():
    with pytest.raises(ValueError, match="unknown face detector backend 'dlib'.*haar.*yunet.*blazeface"):
        create_detector('dlib')


@pytest.mark.parametrize('backend, options, message', [
    ('haar', {'min_score': 1.5}, 'min_score'),
    ('yunet', {'max_side': 10}, 'max_side'),
    ('yunet', {'max_side': 'big'}, 'max_side'),
    ('yunet', {'max_side': 640.5}, 'max_side'),
    ('blazeface', {'min_score': None}, 'min_score'),
    ('blazeface', {'min_score': float('nan')}, 'min_score'),
    ('haar', {'min_size': float('inf')}, 'min_size'),
    ('haar', {'scale_factor': 1.0}, 'scale_factor'),
    ('haar', {'min_neighbors': -1}, 'min_neighbors'),
    ('blazeface', {'model': 'huge'}, 'model'),
    ('blazeface', {'num_threads': 0}, 'num_threads'),
    ('yunet', {'model': 'full'}, "no option.*'model'"),
    ('haar', {'threshold': 0.5}, "no option.*'threshold'"),
])
def test_bad_options_raise_value_error(backend, options, message):
    with pytest.raises(ValueError, match=message):
        create_detector(backend, **options)


@pytest.mark.parametrize('model', ['short', 'full', 'full_sparse'])
def test_blazeface_models_find_a_close_face(model, astronaut):
    boxes = create_detector('blazeface', model=model).detect(astronaut)
    assert any(contains_centre(b, ASTRONAUT_FACE) for b in boxes), f'{model}: {boxes}'


def test_facebox_is_frozen():
    box = FaceBox(1, 2, 3, 4, 0.5)
    with pytest.raises(AttributeError):
        box.x = 5
