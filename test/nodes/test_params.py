"""Parameters: declared with description and range, bad values rejected with a reason at start and at runtime."""
import pytest

from emotion_ros.core.param_spec import ParameterError, ParamSpec, validate_all

SPECS = (
    ParamSpec('fps', 30.0, 'frames per second', min=0.1, max=240.0),
    ParamSpec('backend', 'yunet', 'face detector', choices=('haar', 'yunet')),
    ParamSpec('threshold', 0.5, 'score threshold', min=0.0, max=1.0),
    ParamSpec('name', 'cam', 'frame id', check=lambda v: None if v else 'must not be empty'),
)


def test_validate_all_fills_defaults_and_coerces():
    assert validate_all(SPECS, {'fps': 15}) == {'fps': 15.0, 'backend': 'yunet', 'threshold': 0.5, 'name': 'cam'}


@pytest.mark.parametrize('values,needle', [
    ({'fps': -1.0}, 'below the minimum'), ({'backend': 'dlib'}, 'not one of'), ({'threshold': 1.5}, 'above'),
    ({'name': ''}, 'must not be empty'), ({'fps': 'fast'}, 'expected float'), ({'bogus': 1}, 'unknown parameter'),
    ({'fps': float('nan')}, 'not a finite'),
])
def test_validate_all_rejects_with_reason(values, needle):
    with pytest.raises(ParameterError, match=needle):
        validate_all(SPECS, values)


@pytest.mark.ros
def test_node_parameters_validated_at_start_and_runtime():
    rclpy = pytest.importorskip('rclpy')
    from rclpy.parameter import Parameter

    from emotion_ros.nodes.params import declare_params
    rclpy.init()
    try:
        node = rclpy.create_node('param_probe')
        values = declare_params(node, SPECS)
        assert values['fps'] == 30.0
        desc = node.describe_parameter('fps')
        assert desc.description == 'frames per second' and desc.floating_point_range[0].to_value == 240.0
        ok = node.set_parameters([Parameter('threshold', value=0.25)])[0]
        assert ok.successful and values['threshold'] == 0.25
        bad = node.set_parameters([Parameter('backend', value='dlib')])[0]
        assert not bad.successful and 'not one of' in bad.reason and values['backend'] == 'yunet'
        bad = node.set_parameters([Parameter('threshold', value=2.0)])[0]
        assert not bad.successful and values['threshold'] == 0.25
        node.destroy_node()

        bad_start = rclpy.create_node('param_probe2', parameter_overrides=[Parameter('backend', value='dlib')])
        with pytest.raises(ParameterError, match='backend'):
            declare_params(bad_start, SPECS)
        bad_start.destroy_node()
    finally:
        rclpy.shutdown()


def test_also_accepts_converts_other_types():
    spec = ParamSpec('source', 'demo', 'camera source', also_accepts=(int,))
    assert spec.reason_invalid(0) is None and spec.coerce(0) == '0'
    assert spec.reason_invalid(1.5) is not None
