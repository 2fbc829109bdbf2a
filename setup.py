"""emotion_ros: an ament_python package (colcon) that also pip-installs without a ROS distribution."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'emotion_ros'

CONSOLE_SCRIPTS = [
    'emotion-train = emotion_ros.training.cli:main',
]

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*']) + [PACKAGE + '.training'],
    package_dir={PACKAGE + '.training': 'training'},
    package_data={PACKAGE: ['models/*']},
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
