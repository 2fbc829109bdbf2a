"""Real-time facial-emotion perception for robots (ROS 2)."""
