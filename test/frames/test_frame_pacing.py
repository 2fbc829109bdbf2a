"""FramePacer: an even processing-rate limit and a count of frames lost while the node was busy."""
import pytest

from emotion_ros.core.frames.pacing import FramePacer


def stamps(n, fps=30.0, start=100.0):
    return [start + i / fps for i in range(n)]


def test_no_limit_admits_every_frame():
    pacer = FramePacer()
    assert all(pacer.admit(t) for t in stamps(90))
    assert (pacer.admitted, pacer.skipped, pacer.missed) == (90, 0, 0)


@pytest.mark.parametrize('rate, kept', [(15.0, 45), (10.0, 30), (20.0, 60), (30.0, 90), (60.0, 90)])
def test_rate_limit_keeps_the_rate_evenly(rate, kept):
    pacer = FramePacer(rate)
    admitted = [t for t in stamps(90) if pacer.admit(t)]
    assert abs(len(admitted) - kept) <= 1
    gaps = [b - a for a, b in zip(admitted, admitted[1:])]
    assert max(gaps) <= 1 / rate + 1 / 30 + 1e-9          # never a burst-then-hole pattern
    assert pacer.skipped == 90 - len(admitted)


def test_frames_lost_upstream_are_counted_as_missed():
    pacer = FramePacer()
    frames = stamps(60)
    for i, t in enumerate(frames):
        if i % 3 != 2:                                     # every third frame replaced in the queue
            pacer.admit(t)
    assert 18 <= pacer.missed <= 19 and pacer.skipped == 0        # the first gaps only teach the interval


def test_a_late_start_re_anchors_instead_of_bursting():
    pacer = FramePacer(10.0)
    for t in stamps(10, start=0.0):
        pacer.admit(t)
    assert pacer.admit(5.0)                                # 5 s later (node was busy): admitted
    assert not pacer.admit(5.0 + 1 / 30)                   # and the grid restarts from there
    assert pacer.admit(5.1)


def test_camera_jitter_is_not_counted_as_missed():
    import random
    rng = random.Random(1)
    pacer = FramePacer()
    for t in stamps(300):
        pacer.admit(t + rng.uniform(-0.004, 0.004))
    assert pacer.missed == 0


def test_a_pause_is_not_counted_as_missed_frames():
    pacer = FramePacer()
    for t in stamps(30) + stamps(30, start=200.0):              # the source paused for 99 s
        pacer.admit(t)
    assert pacer.missed == 0


@pytest.mark.parametrize('lost', [[7], [6, 7], [7, 8], [9, 10, 11]])
def test_a_frame_lost_at_its_slot_never_lets_two_frames_through_closer_than_the_rate(lost):
    pacer = FramePacer(10.0)                               # 30 fps: every third frame is due
    admitted = [t for i, t in enumerate(stamps(60, start=0.0)) if i not in lost and pacer.admit(t)]
    gaps = [b - a for a, b in zip(admitted, admitted[1:])]
    assert min(gaps) >= 0.1 - 0.25 / 30 - 1e-9, gaps       # the full suite once saw 0.033 s at 10 Hz
