"""REP-155 face rules without ROS: topic-safe ids, label -> Expression mapping, normalised rois, crops, lifetimes."""
import numpy as np
import pytest

from emotion_ros.core.hri.faces import (EXPRESSION_OF_LABEL, FaceLifetimes, bounded, cropped_face, expression_of,
                                        face_topic, face_topic_id, normalised_roi)
from emotion_ros.core.emotion.labels import CANONICAL_LABELS


def _valid_topic(name: str) -> bool:
    """ROS 2 topic-name rules (design doc 'Topic and Service name mapping'), checked independently of rcl."""
    import re
    return bool(re.fullmatch(r'(/[A-Za-z_][A-Za-z0-9_]*)+', name)) and '__' not in name and len(name) < 200


@pytest.mark.parametrize('track_id', ['3', '12', '1000000', 'a-b', 'a.b', 'face 7', '__x__', 'ä', 'x' * 300,
                                      '/humans/faces/1', '7_'])
def test_ids_are_topic_tokens(track_id):
    face_id = face_topic_id(track_id)
    assert _valid_topic(face_topic(face_id, 'roi')), face_id
    assert face_topic_id(track_id) == face_id                       # stable: same track, same id


def test_ids_agree_with_rcl_validation():
    validate = pytest.importorskip('rclpy.validate_full_topic_name').validate_full_topic_name
    for track_id in ['3', 'a-b', 'ä', 'x' * 300]:
        assert validate(face_topic(face_topic_id(track_id), 'expression'))
    with pytest.raises(Exception, match='number'):
        validate('/humans/faces/3/roi')                              # why the prefix exists


def test_decimal_ids_read_like_hri_face_detect_ids_and_stay_distinct():
    assert face_topic_id('3') == 'f3' and face_topic_id('3', prefix='face') == 'face3'
    ids = [face_topic_id(str(i)) for i in range(1, 2000)]
    assert len(set(ids)) == len(ids)
    assert face_topic_id('a-b') != face_topic_id('a.b')


def test_row10_ids_that_cf495d6_cleaned_alike_stay_apart():
    """Issue 24 row 10: 'a-b' and 'a_b_35c2229e' were one REP-155 id (one face dropped, or an id flipping
    between two people); so were any two ids whose cleaned forms met, and any CRC-32 collision."""
    colliding = ['a-b', 'a_b_35c2229e', 'a_b', 'a.b', 'a__b', '_a_b', 'a b', 'ab']
    ids = [face_topic_id(i) for i in colliding]
    assert len(set(ids)) == len(ids), ids
    assert face_topic_id('a-b') == 'fa_2dzb' and face_topic_id('3') == 'f3' and face_topic_id('f00003') == 'ff00003'
    assert face_topic_id('x' * 300) != face_topic_id('x' * 301)
    assert len(face_topic_id('x' * 10000)) == 1 + 2 + 64


hypothesis = pytest.importorskip('hypothesis')
from hypothesis import given, settings, strategies as st  # noqa: E402

# Track ids as a hostile upstream could send them: short look-alikes over a small alphabet (where collisions of a
# cleaning scheme live), escape-shaped strings, long ids near the hashing threshold, and any Unicode.
track_ids = (st.text(alphabet='ab_-.z5f ', max_size=12)
             | st.text(alphabet='_0123456789abcdefhz', max_size=24)
             | st.text(alphabet='xy_-', min_size=30, max_size=200)
             | st.text(max_size=60))


@settings(max_examples=400, deadline=None)
@given(st.sets(track_ids, min_size=2, max_size=40), st.sampled_from(['f', 'face', 'Fx9']))
def test_generated_id_sets_map_to_distinct_valid_topic_tokens(raw_ids, prefix):
    mapped = {i: face_topic_id(i, prefix) for i in raw_ids}
    assert len(set(mapped.values())) == len(raw_ids), mapped           # injective over the set
    for raw, face_id in mapped.items():
        assert _valid_topic(face_topic(face_id, 'expression')), (raw, face_id)
        assert face_topic_id(raw, prefix) == face_id                     # stable


@settings(max_examples=200, deadline=None)
@given(track_ids)
def test_generated_ids_pass_rcl_validation(raw):
    validate = pytest.importorskip('rclpy.validate_full_topic_name').validate_full_topic_name
    assert validate(face_topic(face_topic_id(raw), 'cropped'))


def test_mapping_covers_every_shipped_label_with_rep155_constants():
    hri = pytest.importorskip('hri_msgs.msg', reason='hri_msgs not built (make hri-msgs)')
    constants = {v for n, v in vars(hri.Expression).items() if n.isupper() and isinstance(v, str)}
    assert len(constants) >= 25, constants
    assert set(CANONICAL_LABELS) == set(EXPRESSION_OF_LABEL)
    assert set(EXPRESSION_OF_LABEL.values()) <= constants
    assert expression_of('happy') == hri.Expression.HAPPY and expression_of('fear') == hri.Expression.SCARED
    assert expression_of('surprise') == hri.Expression.SURPRISED and expression_of('disgust') == hri.Expression.DISGUSTED


@pytest.mark.parametrize('label,expected', [('happy', 'happy'), ('sad', 'sad'), ('angry', 'angry'),
                                            ('surprise', 'surprised'), ('fear', 'scared'),
                                            ('disgust', 'disgusted'), ('neutral', 'neutral'),
                                            ('Happiness', 'happy'), ('scared', 'scared'),
                                            ('contempt', ''), ('thinking', ''), ('', '')])
def test_label_mapping(label, expected):
    assert expression_of(label) == expected


def test_normalised_roi_inside_unit_square_and_clipped_at_borders():
    assert normalised_roi((120, 27, 48, 54), 480, 270) == pytest.approx((0.25, 0.1, 0.35, 0.3))
    xmin, ymin, xmax, ymax = normalised_roi((-20, 250, 60, 60), 480, 270)   # face cut by the left/bottom edge
    assert (xmin, ymax) == (0.0, 1.0) and 0 < xmax < 1 and 0 < ymin < 1
    assert normalised_roi((500, 300, 10, 10), 480, 270) == (1.0, 1.0, 1.0, 1.0)  # off-image: degenerate, in range
    for bad in [((0, 0, -1, 5), 480, 270), ((0, 0, 5, 5), 0, 270), ((float('nan'), 0, 5, 5), 480, 270)]:
        with pytest.raises(ValueError):
            normalised_roi(*bad)


def test_bounded_keeps_rep155_ranges_for_bad_values():
    assert bounded(0.5, 0.0, 1.0) == 0.5 and bounded(1.7, 0.0, 1.0) == 1.0 and bounded(-3, -1.0, 1.0) == -1.0
    assert bounded(float('nan'), -1.0, 1.0) == 0.0 and bounded(float('inf'), 0.0, 1.0) == 0.0


def test_cropped_face_is_square_with_aspect_kept():
    image = np.zeros((270, 480, 3), np.uint8)
    image[30:130, 205:290] = 200                                     # an 85x100 "face"
    crop = cropped_face(image, (205, 30, 85, 100), size=128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    rows = np.where(crop[:, :, 0].max(axis=1) > 100)[0]
    cols = np.where(crop[:, :, 0].max(axis=0) > 100)[0]
    assert len(rows) == 128 and 100 <= len(cols) <= 112              # 85/100 of the height, centred
    assert abs((cols[0] + cols[-1]) / 2 - 63.5) <= 1.5
    assert cropped_face(image, (-10, -10, 40, 40), size=64).shape == (64, 64, 3)
    with pytest.raises(ValueError):
        cropped_face(image, (600, 10, 20, 20))


def test_lifetimes_grace_period():
    life = FaceLifetimes(grace_s=1.0)
    c = life.update(['f1', 'f2'], now=0.0)
    assert c.tracked == ['f1', 'f2'] and c.appeared == ['f1', 'f2']
    c = life.update(['f1'], now=0.5)                                  # f2 missed: leaves tracked at once ...
    assert c.tracked == ['f1'] and c.appeared == [] and set(life.alive) == {'f1', 'f2'}  # ... topics stay
    assert life.expire(now=0.9) == []
    c = life.update(['f1', 'f2'], now=0.9)                            # back within the grace period: same topics
    assert c.appeared == []
    life.update(['f1', 'f2'], now=2.0)
    life.update(['f1'], now=2.2)
    assert life.expire(now=2.9) == [] and life.expire(now=3.1) == ['f2']
    assert life.alive == ['f1']
    c = life.update(['f2'], now=3.5)                                  # after expiry it is a new appearance
    assert c.appeared == ['f2']
    assert sorted(life.clear()) == ['f1', 'f2'] and life.alive == []


def test_lifetimes_duplicates_empty_ids_and_clock_jumps():
    life = FaceLifetimes(grace_s=0.5)
    assert life.update(['f1', '', 'f1'], now=10.0).tracked == ['f1']
    assert life.expire(now=2.0) == []                                 # clock went back: grace restarts ...
    assert life.expire(now=2.4) == [] and life.expire(now=2.6) == ['f1']  # ... from the new time
    with pytest.raises(ValueError):
        FaceLifetimes(grace_s=-1)


@pytest.mark.ros
def test_node_without_hri_msgs_refuses_to_start_with_the_reason(ros_env):
    """hri_msgs is optional: the node says how to install it and exits 2 (launch's respawn does not loop on it)."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['hri_msgs'] = None; sys.argv = ['hri_publisher_node']; "
            "from emotion_ros.nodes.hri_publisher_node import main; main()")
    result = subprocess.run([sys.executable, '-c', code], env=ros_env, capture_output=True, text=True, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert 'hri_msgs is not installed' in out and 'make hri-msgs' in out and 'Traceback' not in out, out


def test_make_setup_builds_hri_msgs_only_where_its_source_exists(tmp_path):
    import subprocess

    from conftest import REPO
    def planned(*args):
        return subprocess.run(['make', '-n', '-B', '-C', str(REPO), *args], capture_output=True, text=True,
                              timeout=60).stdout
    src = tmp_path / 'hri_msgs'
    (src / 'msg').mkdir(parents=True)
    (src / 'package.xml').write_text('<package/>')
    assert f'cmake -S {src} -B .build/hri_msgs' in planned('setup', f'HRI_MSGS_SRC={src}')
    assert 'hri_msgs' not in planned('setup', f'HRI_MSGS_SRC={tmp_path / "absent"}')
    assert '.build/emotion_msgs' not in planned('hri-msgs', f'HRI_MSGS_SRC={src}')  # its own build folder only
