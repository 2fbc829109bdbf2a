"""ROS-free core: detection, tracking, classification, smoothing, Hue mapping, dataset I/O."""
