"""ROS4HRI (REP-155): ids, expression names and regions in REP-155 terms, ROS-free.

May import core.emotion.labels; the ROS side is nodes/hri_publisher_node.py.
"""
