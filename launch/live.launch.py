"""The live graph as separate node processes: camera -> face detector -> emotion classifier (-> Hue light).

    ros2 launch emotion_ros live.launch.py source:=0 detector:=yunet namespace:=cam1 hue:=true
Two cameras: launch twice with different `namespace` and `source`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'emotion_ros'


def generate_launch_description():
    params = LaunchConfiguration('params')
    namespace = LaunchConfiguration('namespace')
    # Crashed processing nodes come back (at most 3 times: a bad parameter or model must not crash-loop).
    # The camera reconnects dropped devices itself and ends cleanly at the end of a file, so it is not respawned.
    common = dict(package=PACKAGE, namespace=namespace, output='screen')
    respawn = dict(respawn=LaunchConfiguration('respawn'), respawn_delay=2.0, respawn_max_retries=3)
    args = [
        DeclareLaunchArgument('params', default_value=PathJoinSubstitution(
            [FindPackageShare(PACKAGE), 'config', 'params.yaml']), description='ROS parameter file'),
        DeclareLaunchArgument('source', default_value='demo',
                              description='webcam index, /dev/videoN, video file, image folder, URL, or demo'),
        DeclareLaunchArgument('detector', default_value='blazeface', description='face detector: haar, yunet, blazeface'),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of every node (one per camera)'),
        DeclareLaunchArgument('respawn', default_value='true', description='restart a crashed processing node (max 3 times)'),
        DeclareLaunchArgument('hue', default_value='false', description='drive a Philips Hue light'),
        DeclareLaunchArgument('recorder', default_value='false', description='run the dataset recorder'),
    ]
    nodes = [
        Node(executable='camera_node', name='camera', parameters=[params, {'source': LaunchConfiguration('source')}],
             **common),
        Node(executable='face_detector_node', name='face_detector',
             parameters=[params, {'backend': LaunchConfiguration('detector')}],
             remappings=[('image', 'image_raw'), ('image/compressed', 'image_raw/compressed')], **common, **respawn),
        Node(executable='emotion_classifier_node', name='emotion_classifier',
             parameters=[params, {'face_detector_backend': LaunchConfiguration('detector')}],
             remappings=[('image', 'image_raw')], **common, **respawn),
        Node(executable='hue_actuator_node', name='hue_actuator', parameters=[params],
             condition=IfCondition(LaunchConfiguration('hue')), **common, **respawn),
        Node(executable='dataset_recorder_node', name='dataset_recorder',
             parameters=[params, {'face_detector_backend': LaunchConfiguration('detector')}],
             remappings=[('image', 'image_raw')], condition=IfCondition(LaunchConfiguration('recorder')),
             **common, **respawn),
    ]
    return LaunchDescription(args + nodes)
