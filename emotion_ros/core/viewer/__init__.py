"""The live web viewer: its HTTP/WebSocket server and its static page (static/).

ROS-free; the viewer node hands it data. Must not import core.hue or the model.
"""
