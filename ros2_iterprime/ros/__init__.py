"""The ROS 2 adapter of ros2_iterprime: one module per concern, over the ROS-free library.

Nothing in ``ros2_iterprime`` outside this subpackage imports rclpy or ROS message packages.
"""
