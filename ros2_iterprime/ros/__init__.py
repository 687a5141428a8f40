"""The ROS 2 adapter: `iterprime_node`, a managed node over the ROS-free library, one module per concern.

Owns everything that touches rclpy or ROS messages: the lifecycle node and its wiring (`node`), the
executable (`entry`), parameters, the camera and expression inputs, newest-frame scheduling, depth
pairing, the model call and its failure modes (`processing`, `track`), publishers (the messages are
built by `..messages` with rclpy's classes), the `~/segment` service, diagnostics, TF and logging. It
sits on top of the import order: it may import tracking, the grounding method, the message formats,
3-D geometry, model loading and the root helpers; nothing outside this folder imports rclpy or ROS
message packages, and nothing imports this folder. See docs/ros.md.
"""
