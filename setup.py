"""emotion_ros: an ament_python package (colcon) that also pip-installs without a ROS distribution."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'emotion_ros'

CONSOLE_SCRIPTS = [
    'camera_node = emotion_ros.nodes.camera_node:main',
    'face_detector_node = emotion_ros.nodes.face_detector_node:main',
    'emotion_classifier_node = emotion_ros.nodes.emotion_classifier_node:main',
    'hue_actuator_node = emotion_ros.nodes.hue_actuator_node:main',
    'dataset_recorder_node = emotion_ros.nodes.dataset_recorder_node:main',
    'hri_publisher_node = emotion_ros.nodes.hri_publisher_node:main',
    'emotion_viewer = emotion_ros.nodes.viewer_node:main',
    'emotion_live = emotion_ros.live:main',
    'emotion-live = emotion_ros.live:main',
    'emotion-train = emotion_ros.training.cli:main',
    'emotion-dataset = emotion_ros.dataset_cli:main',
]

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*']) + [PACKAGE + '.training'],
    package_dir={PACKAGE + '.training': 'training'},
    package_data={PACKAGE: ['models/*'], PACKAGE + '.core.viewer': ['static/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.py')),
        ('share/' + PACKAGE + '/config', glob('config/*')),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest']},
    zip_safe=True,
    maintainer='emotion_ros developers',
    maintainer_email='dev@emotion-ros.invalid',
    description='Real-time facial-emotion perception for robots (ROS 2).',
    license='Apache-2.0',
    python_requires='>=3.10',
    entry_points={'console_scripts': CONSOLE_SCRIPTS},
)
