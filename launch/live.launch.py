"""The live graph as separate node processes: camera -> face detector -> emotion classifier (-> Hue light, recorder).

    ros2 launch emotion_ros live.launch.py source:=0 detector:=yunet
    ros2 launch emotion_ros live.launch.py hue:=true hue_bridge:=192.168.1.20
    ros2 launch emotion_ros live.launch.py --show-args          # every argument, with its description

Parameters come from `params` (config/params.yaml: namespace-proof `/**/node:` keys), then from the arguments that
are given; an argument left empty changes nothing, so the parameter file (or the node's default) decides.
Two cameras: launch twice with different `namespace` and `source`. An argument this file does not declare is
refused (launch itself would ignore it silently), when this file is the one `ros2 launch` was given.
To add an optional node: one builder function below and one entry in OPTIONAL_NODES.
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler, TimerAction
from launch.event_handlers import OnProcessExit
from launch.substitutions import PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'emotion_ros'
ON = ('true', '1', 'yes', 'on')
OFF = ('false', '0', 'no', 'off')

# name: (default, description). '' = not given.
ARGUMENTS = {
    'params': (PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'params.yaml']),
               'ROS parameter file for every node (keys /**/<node>: so any namespace matches)'),
    'namespace': ('', 'namespace of every node and topic, one per camera (e.g. cam1 -> /cam1/emotions)'),
    'source': ('', 'camera source: webcam index (0), /dev/videoN, video file, image folder or glob, stream URL, '
               'demo; empty = the parameter file (demo)'),
    'fps': ('', 'camera publish rate; 0 = the source\'s own rate; empty = the parameter file'),
    'loop': ('', 'true: play a file/folder/demo source over and over; empty = the parameter file'),
    'detector': ('', 'face detector backend: blazeface, yunet or haar; empty = the parameter file (blazeface)'),
    'model': ('', 'emotion model: emotion, emotion_accurate, emotion_fast or a .tflite path; empty = the '
              'parameter file (emotion)'),
    'calibration': ('', 'calibration file fitted for the model (emotion-train calibrate, docs/calibration.md); empty = '
                    'the parameter file (none)'),
    'respawn': ('true', 'restart a crashed processing node (at most 3 times, 2 s apart); a clean exit (0: Ctrl-C, '
                'lifecycle shutdown) or a refused configuration (2) is not a crash'),
    'hue': ('false', 'true: run hue_actuator_node (set hue_bridge, or hue_dry_run:=true)'),
    'hue_bridge': ('', 'Hue bridge as host or host:port; empty = the parameter file'),
    'hue_dry_run': ('', 'true: the Hue node runs without a bridge and publishes what it would send; empty = the '
                    'parameter file'),
    'recorder': ('false', 'true: run dataset_recorder_node (emotion-dataset capture ...)'),
    'dataset_dir': ('', 'dataset folder of the recorder; empty = the parameter file (~/emotion_dataset)'),
    'view': ('false', 'true: run the web viewer node (emotion_viewer, http://127.0.0.1:8080/)'),
    'view_port': ('', 'port of the web viewer; empty = the parameter file (8080)'),
    'hri': ('false', 'true: publish ROS4HRI (REP-155) topics as well'),
}
# Added by `ros2 launch --launch-prefix ...` itself.
LAUNCH_OWN = ('launch-prefix', 'launch-prefix-filter')


def _text(context, name):
    return context.launch_configurations.get(name, '').strip()


def _flag(context, name):
    value = _text(context, name).lower()
    if value not in ON + OFF:
        raise ValueError(f'launch argument {name}:={value!r}: expected true or false')
    return value in ON


def _number(context, name):
    try:
        return float(_text(context, name))
    except ValueError:
        raise ValueError(f'launch argument {name}:={_text(context, name)!r}: expected a number') from None


def _given(context, mapping):
    """Parameter overrides from the arguments that were given: {parameter: (argument, convert)}."""
    out = {}
    for parameter, (argument, convert) in mapping.items():
        if _text(context, argument):
            out[parameter] = convert(context, argument) if convert else _text(context, argument)
    return out


RESPAWNS, RESPAWN_DELAY_S = 3, 2.0
NOT_A_CRASH = (0, 2)   # node_main: 0 = Ctrl-C or lifecycle shutdown, 2 = a refused parameter, model or source


def _node(context, executable, name, overrides=None, **kwargs):
    """One node with the parameter file, then the given arguments, restarted when it crashes.

    Not launch's own `respawn`: that restarts a process whatever its exit code, so a node shut down through
    its lifecycle came back 2 s later, and after Ctrl-C under load a node that had finished before launch
    handled its own SIGINT was started again (CI, two hogs: launch's exit code was then None)."""
    parameters = [_text(context, 'params')] + ([overrides] if overrides else [])

    def start(respawns_left):
        node = Node(package=PACKAGE, executable=executable, name=name, namespace=_text(context, 'namespace'),
                    parameters=parameters, output='screen', **kwargs)

        def on_exit(event, launch_context):
            if event.returncode in NOT_A_CRASH or respawns_left <= 0 or launch_context.is_shutdown:
                return None
            return [LogInfo(msg=f'{name} crashed (exit code {event.returncode}): restarting in {RESPAWN_DELAY_S:g} s '
                                f'({respawns_left - 1} restart(s) left)'),
                    TimerAction(period=RESPAWN_DELAY_S, actions=start(respawns_left - 1))]
        return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit))]
    return start(RESPAWNS if _flag(context, 'respawn') else 0)


def _camera(context, consumers):
    # A file must not be gone before the graph is up: hold the first frame until the image_raw consumers this
    # file starts are subscribed (by name: an early rqt/rviz must not count for a detector still loading; camera
    # wait_timeout_s bounds the wait). The parameter file may still override it.
    overrides = _given(context, {'source': ('source', None), 'fps': ('fps', _number), 'loop': ('loop', _flag)})
    return Node(package=PACKAGE, executable='camera_node', name='camera', namespace=_text(context, 'namespace'),
                parameters=[{'wait_for_nodes': ','.join(consumers)}, _text(context, 'params'), overrides],
                output='screen')


def _face_detector(context):
    return _node(context, 'face_detector_node', 'face_detector', _given(context, {'backend': ('detector', None)}),
                 remappings=[('image', 'image_raw'), ('image/compressed', 'image_raw/compressed')])


def _emotion_classifier(context):
    return _node(context, 'emotion_classifier_node', 'emotion_classifier',
                 _given(context, {'model_path': ('model', None), 'calibration_path': ('calibration', None)}),
                 remappings=[('image', 'image_raw')])


def _hue_actuator(context):
    return _node(context, 'hue_actuator_node', 'hue_actuator',
                 _given(context, {'bridge': ('hue_bridge', None), 'dry_run': ('hue_dry_run', _flag)}))


def _dataset_recorder(context):
    return _node(context, 'dataset_recorder_node', 'dataset_recorder',
                 _given(context, {'dataset_dir': ('dataset_dir', None)}), remappings=[('image', 'image_raw')])


def _emotion_viewer(context):
    return _node(context, 'emotion_viewer', 'emotion_viewer',
                 _given(context, {'port': ('view_port', lambda c, n: int(_number(c, n)))}))


def _hri_publisher(context):
    return _node(context, 'hri_publisher_node', 'hri_publisher', remappings=[('image', 'image_raw')])


# switch argument: (builder, its node name if it subscribes to image_raw)
OPTIONAL_NODES = {
    'hue': (_hue_actuator, None),
    'recorder': (_dataset_recorder, 'dataset_recorder'),
    'view': (_emotion_viewer, None),  # shows image_annotated
    'hri': (_hri_publisher, 'hri_publisher'),  # REP-155 /humans/faces/... (docs/ros4hri.md)
}


def _refuse_unknown_arguments(context):
    if not any(os.path.basename(a) == os.path.basename(__file__) for a in sys.argv[1:]):
        return  # included from another launch file: its own arguments are in argv too
    given = [a.split(':=', 1)[0] for a in context.argv if ':=' in a]
    unknown = sorted(set(given) - set(ARGUMENTS) - set(LAUNCH_OWN))
    if unknown:
        raise RuntimeError(f'unknown launch argument(s) {", ".join(unknown)}; this file takes: '
                           f'{", ".join(ARGUMENTS)} (ros2 launch {PACKAGE} live.launch.py --show-args)')


def _graph(context):
    _refuse_unknown_arguments(context)
    optional = [(build, image) for switch, (build, image) in OPTIONAL_NODES.items() if _flag(context, switch)]
    consumers = ['face_detector', 'emotion_classifier'] + [image for _, image in optional if image]
    nodes = [_camera(context, consumers), *_face_detector(context), *_emotion_classifier(context)]
    for build, _ in optional:
        nodes += build(context)
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in ARGUMENTS.items()] + [OpaqueFunction(function=_graph)])
