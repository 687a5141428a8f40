"""Offline replay of recordings: a rosbag2 in, the node's outputs in a rosbag2 out, without ROS installed.

Owns reading a rosbag2 (MCAP or sqlite3) with the `rosbags` library (`bag_io`: topics, typestore,
per-message-type decoders, the custom ros2_iterprime_msgs types registered from their .msg files), and
the replay itself (`run`: grounding, or with tracking, on every recorded colour frame, with the depth,
CameraInfo and TF of its original stamp, the outputs written as the node's topics and types). It uses
the same rules and message semantics as the node through `messages` (outputs, image conversion), the
method through `grounding` / `tracking`, 3-D and TF through `geometry`; it never imports rclpy or the
ROS adapter, so `ros2_iterprime bag` (cli/bag.py) works from a plain pip install.
"""
