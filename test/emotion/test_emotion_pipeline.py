"""EmotionPipeline (crop -> batch predict -> smoothing -> valence/arousal) with the shipped model and with
stub models whose outputs the assertions know."""
from __future__ import annotations

import numpy as np
import pytest

from emotion_ros.core.emotion.model import EmotionModel, default_model_path
from emotion_ros.core.emotion.pipeline import EmotionPipeline
from emotion_ros.core.faces.crop import crop_face
from emotion_ros.core.emotion.smoothing import ScoreSmoother

LABELS = ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')


class Stub:
    """Answers each crop with a one-hot on the class given by the crop's mean brightness; records calls."""
    labels = LABELS

    def __init__(self, nan_rows=()):
        self.calls, self.nan_rows = [], set(nan_rows)

    def predict(self, crops):
        crops = np.asarray(crops)
        self.calls.append(crops.shape)
        out = np.zeros((len(crops), len(LABELS)), np.float32)
        for i, c in enumerate(crops):
            out[i, int(c.mean()) % len(LABELS)] = 1.0
            if i in self.nan_rows:
                out[i] = np.nan
        return out


def _image(values):
    """A 100 px high strip of 100 px squares, square k filled with values[k]."""
    img = np.zeros((100, 100 * len(values)), np.uint8)
    for k, v in enumerate(values):
        img[:, 100 * k:100 * (k + 1)] = v
    return img


def test_one_batched_call_and_order_kept():
    model = Stub()
    img = _image([3, 5])   # class 3 = happy, 5 = surprise
    res = EmotionPipeline(model).process(img, [(110, 10, 80, 80), (10, 10, 80, 80)], ['b', 'a'])
    assert model.calls == [(2, 48, 48)]
    assert [(f.index, f.track_id, f.expression) for f in res.faces] == [(0, 'b', 'surprise'), (1, 'a', 'happy')]
    happy = res.faces[1]
    assert happy.confidence == 1.0 and happy.valence > 0.5 and happy.arousal > 0.3
    assert res.problems == []


def test_bad_boxes_reported_not_raised_and_boxes_clipped():
    res = EmotionPipeline(Stub()).process(_image([3]), [(-20, -20, 60, 60), (500, 500, 10, 10),
                                                        (0, 0, float('nan'), 5)], ['x', 'y', 'z'])
    assert [f.track_id for f in res.faces] == ['x']
    assert res.faces[0].box == (0, 0, 40, 40)
    assert [k for k, _ in res.problems] == ['bad_box', 'bad_box']


def test_max_faces_keeps_the_largest():
    res = EmotionPipeline(Stub(), max_faces=1).process(_image([3, 5]), [(0, 0, 30, 30), (100, 0, 90, 90)])
    assert [f.index for f in res.faces] == [1]
    assert [k for k, _ in res.problems] == ['too_many']


def test_nan_rows_left_out_with_a_problem():
    res = EmotionPipeline(Stub(nan_rows={0})).process(_image([3, 5]), [(0, 0, 90, 90), (100, 0, 90, 90)])
    assert [f.index for f in res.faces] == [1]
    assert [k for k, _ in res.problems] == ['model_nan']


def test_smoothing_follows_the_track_over_frames():
    pipe = EmotionPipeline(Stub(), ScoreSmoother(time_constant_s=1.0, max_age_s=5.0))
    first = pipe.process(_image([3]), [(0, 0, 90, 90)], ['t1'], t=0.0).faces[0]
    second = pipe.process(_image([5]), [(0, 0, 90, 90)], ['t1'], t=0.1).faces[0]
    assert first.expression == 'happy'
    assert second.expression == 'happy' and 0.5 < second.confidence < 1.0   # a 0.1 s blip does not flip it
    assert second.scores[5] > 0.0 and abs(float(second.scores.sum()) - 1.0) < 1e-5
    dup = pipe.process(_image([3, 3]), [(0, 0, 90, 90), (100, 0, 90, 90)], ['t2', 't2'], t=0.2)
    assert [k for k, _ in dup.problems] == ['duplicate_id']


def test_shipped_model_through_the_pipeline_equals_a_direct_predict():
    model = EmotionModel(default_model_path(), num_threads=1)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = [(20, 30, 100, 120), (180, 40, 90, 90)]
    res = EmotionPipeline(model).process(img, boxes)
    direct = model.predict(np.stack([crop_face(img, b) for b in boxes]))
    assert len(res.faces) == 2
    for f in res.faces:
        assert np.allclose(f.scores, direct[f.index], atol=1e-6)
        assert f.expression == model.labels[int(direct[f.index].argmax())]
    assert EmotionPipeline(model).predict_crops([]).shape == (0, model.num_classes)


if __name__ == '__main__':
    raise SystemExit(pytest.main([__file__, '-q']))
