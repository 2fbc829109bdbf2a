"""FaceTracker: hysteresis, id hygiene and crossings on synthetic boxes; stable ids on a real clip."""
import pytest

from conftest import require_shared
from images import video_frames
from emotion_ros.core.faces.detection import DEFAULT_BACKEND, FaceBox, create_detector
from emotion_ros.core.faces.tracking import FaceTracker, iou_matrix


def box(x, y, w=50, h=50, score=0.9):
    return FaceBox(int(x), int(y), int(w), int(h), score)


def test_one_id_per_box_in_order_and_decimal():
    tracker = FaceTracker()
    ids = tracker.update([box(0, 0), box(200, 0), box(400, 0)])
    assert ids == ['1', '2', '3']
    assert tracker.update([box(402, 1), box(3, 2), box(199, 0)]) == ['3', '1', '2']
    assert tracker.update([]) == []


def test_face_keeps_its_id_through_a_short_dropout():
    tracker = FaceTracker(max_missed=3)
    first = tracker.update([box(100, 100)])[0]
    for _ in range(3):
        assert tracker.update([]) == []
    assert tracker.update([box(102, 101)]) == [first]


def test_track_retired_after_max_missed_and_id_never_reused():
    tracker = FaceTracker(max_missed=2, min_hits=1)
    handed_out = []
    for _ in range(5):
        track_id = tracker.update([box(100, 100)])[0]
        assert track_id.isdigit() and track_id not in handed_out
        handed_out.append(track_id)
        for _ in range(3):
            tracker.update([])
    tracker.reset()
    assert tracker.update([box(100, 100)])[0] not in handed_out


def test_spurious_one_frame_box_gets_no_id_and_uses_none_up():
    tracker = FaceTracker(min_hits=2)
    assert tracker.update([box(100, 100)]) == ['1']
    assert tracker.update([box(101, 100), box(400, 300)]) == ['1', '']
    assert tracker.update([box(102, 100)]) == ['1']
    assert tracker.update([box(103, 100), box(250, 250)]) == ['1', '']
    assert tracker.update([box(104, 100), box(251, 250)]) == ['1', '2']


def test_velocity_prediction_bridges_a_dropout_of_a_moving_face():
    """At 15 px/frame a 50 px face no longer overlaps its last box after 3 missed frames; prediction does."""
    tracker = FaceTracker(max_missed=5)
    ids = [tracker.update([box(20 + 15 * t, 100)])[0] for t in range(5)]
    assert len(set(ids)) == 1
    for t in range(5, 8):
        tracker.update([])
    assert tracker.update([box(20 + 15 * 8, 100)]) == [ids[0]]


def test_crossing_faces_keep_their_ids():
    tracker = FaceTracker()
    left, right = tracker.update([box(0, 100), box(300, 110)])
    for t in range(1, 31):
        a, b = box(10 * t, 100), box(300 - 10 * t, 110)
        order = [a, b] if t % 2 else [b, a]
        ids = tracker.update(order)
        assert (ids if t % 2 else ids[::-1]) == [left, right], f'step {t}: {ids}'


def test_iou_matrix():
    m = iou_matrix([(0, 0, 10, 10), (5, 0, 10, 10)], [(0, 0, 10, 10), (100, 100, 1, 1)])
    assert m.shape == (2, 2)
    assert m[0, 0] == pytest.approx(1.0)
    assert m[1, 0] == pytest.approx(50 / 150)
    assert m[0, 1] == 0.0


@pytest.mark.parametrize('options', [{'iou_threshold': 0}, {'iou_threshold': 1.5}, {'max_missed': -1},
                                     {'min_hits': 0}, {'max_missed': 2.5}])
def test_bad_options(options):
    with pytest.raises(ValueError):
        FaceTracker(**options)


def test_three_walkers_keep_three_distinct_stable_ids():
    path = require_shared('media', 'face-demographics-walking-and-pause.mp4')
    detector = create_detector(DEFAULT_BACKEND)
    tracker = FaceTracker()
    history = []
    for frame in video_frames(path):
        boxes = detector.detect(frame)
        ids = tracker.update(boxes)
        history.append(sorted(zip((b.x + b.w / 2 for b in boxes), ids)))
    assert len(history) >= 30
    all_ids = {i for frame in history for _, i in frame if i}
    assert len(all_ids) == 3, f'ids over the clip: {history}'
    full = [frame for frame in history if len(frame) == 3]
    assert len(full) >= 0.9 * len(history), f'three faces in only {len(full)}/{len(history)} frames'
    left_to_right = [tuple(i for _, i in frame) for frame in full]
    assert len(set(left_to_right)) == 1, f'ids changed places: {set(left_to_right)}'
    assert '' not in left_to_right[0]
