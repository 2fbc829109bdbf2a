"""A live graph for tests: a listener node in the test process plus node processes, collecting image_raw, faces
and emotions (used by test/graph and test/hri)."""
import rclpy
from sensor_msgs.msg import Image

from emotion_msgs.msg import EmotionArray, FaceArray
from emotion_ros.nodes.qos import latest_frame_qos, results_qos
from ros_graph import NodeProcess, ros_args, spin_until


class Graph:
    """Listener in this process + node processes; collects image_raw, faces and emotions."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir, self.procs = env, log_dir, []
        rclpy.init()
        self.node = rclpy.create_node('graph_test_listener')
        self.images, self.faces, self.emotions = [], [], []
        self.node.create_subscription(Image, 'image_raw', self.images.append, latest_frame_qos(200))
        self.subs = {
            'face_detector_node': self.node.create_subscription(FaceArray, 'faces', self.faces.append,
                                                                results_qos(200)),
            'emotion_classifier_node': self.node.create_subscription(EmotionArray, 'emotions', self.emotions.append,
                                                                     results_qos(200)),
        }

    def start(self, script, params=None, remaps=None):
        proc = NodeProcess(script, ros_args(params, remaps), self.env, self.log_dir)
        self.procs.append(proc)
        return proc

    def run_clip(self, clip, processing=('face_detector_node', 'emotion_classifier_node'), fps=12.0, **camera):
        for script in processing:
            self.start(script, remaps={'image': 'image_raw'})
        # Results published before discovery completes are lost: start frames once every output is matched.
        assert spin_until(self.node, lambda: all(self.subs[s].get_publisher_count() for s in processing), 60), \
            self.logs()
        cam = self.start('camera_node', dict(source=str(clip), fps=fps, wait_for_subscribers=1 + len(processing),
                                             **camera))
        spin_until(self.node, lambda: cam.proc.poll() is not None, 120)
        last = self.emotions if 'emotion_classifier_node' in processing else self.faces
        spin_until(self.node, lambda: len(last) >= len(self.images), 10)
        return cam

    def close(self):
        codes = [p.stop() for p in self.procs]
        self.node.destroy_node()
        rclpy.shutdown()
        return codes

    def logs(self):
        return '\n'.join(f'--- {p.log_path.name}\n{p.output[-3000:]}' for p in self.procs)
