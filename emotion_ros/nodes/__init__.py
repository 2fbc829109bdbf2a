"""Thin ROS 2 nodes that translate between topics and the ROS-free core."""
