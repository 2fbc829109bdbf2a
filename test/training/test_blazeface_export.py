"""training/blazeface_export: the rebuilt BlazeFace graph reproduces MediaPipe's file, and the shipped
'full_sparse_fast' model is what the export makes (TensorFlow needed: a training dependency)."""
import numpy as np
import pytest

from emotion_ros.core.faces.detection import MODEL_DIR, _BLAZEFACE_MODELS

pytest.importorskip('tensorflow')
SOURCE = MODEL_DIR / _BLAZEFACE_MODELS['full_sparse'].file
FAST = _BLAZEFACE_MODELS['full_sparse_fast']


@pytest.fixture(scope='module')
def originals():
    """What the original model is fed for two real frames (the astronaut, and it mirrored)."""
    from images import astronaut_bgr
    from emotion_ros.training.blazeface_export import model_inputs
    frame = astronaut_bgr(640, 480)
    return model_inputs([frame, frame[:, ::-1].copy()])


@pytest.mark.slow
def test_rebuilt_graph_reproduces_the_original_and_the_shipped_export(originals):
    from emotion_ros.training.blazeface_export import (FLOAT_MAX_ABS_DIFF, as_pixels, convert, fast_export,
                                                       max_abs_diff, outputs_of, rebuild)
    rebuilt = convert(rebuild(SOURCE, bgr=True, pixels=True)[0])
    diff = max_abs_diff(SOURCE.read_bytes(), originals, rebuilt, [as_pixels(x) for x in originals])
    assert max(diff.values()) <= FLOAT_MAX_ABS_DIFF, diff
    fresh, shipped = fast_export(SOURCE), (MODEL_DIR / FAST.file).read_bytes()
    with_keypoints = convert(rebuild(SOURCE, input_hw=(FAST.input_rows, FAST.input_size), bgr=True, pixels=True)[0])
    for x in originals:
        pixels = as_pixels(x, FAST.input_rows)
        a, b, full = outputs_of(fresh, pixels), outputs_of(shipped, pixels), outputs_of(with_keypoints, pixels)
        assert sorted(a) == sorted(b) == [1, 4] and all(np.allclose(a[k], b[k], atol=1e-3) for k in a)
        assert np.array_equal(b[4], full[16][..., :4]) and np.array_equal(b[1], full[1])   # boxes_only drops keypoints


def test_rebuild_refuses_an_unmapped_op(tmp_path):
    """A graph with an op the rebuild does not know fails loudly, not with a silently wrong model."""
    import tensorflow as tf
    from emotion_ros.training.blazeface_export import rebuild

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def odd(x):
        return [tf.math.tanh(x)]

    path = tmp_path / 'odd.tflite'
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([odd.get_concrete_function()]).convert())
    function, _ = rebuild(path)
    with pytest.raises(NotImplementedError, match='TANH'):
        function.get_concrete_function()
