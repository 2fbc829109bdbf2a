"""QoS profiles shared by the nodes."""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data


def latest_frame_qos(depth: int = 1) -> QoSProfile:
    """SensorDataQoS (best effort) keeping only the newest `depth` frames: a slow node drops stale frames."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=qos_profile_sensor_data.durability)


def results_qos(depth: int = 10) -> QoSProfile:
    """Reliable, keep-last: small result messages (faces, emotions) are all delivered to live subscribers."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def latched_qos(depth: int = 1) -> QoSProfile:
    """Reliable, transient local: a late subscriber (a UI started later) still gets the last state."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
