"""ROS message formats in plain Python: what the node publishes and reads, without rclpy.

Owns sensor_msgs/Image <-> numpy (`image`), image_transport's compressed and compressedDepth payloads
(`compressed`), the PointCloud2 encoding (`pointcloud2`) and the node's
outputs for one answered job (`outputs`: the Outcome, not-found semantics, mask / result / points /
pose / markers built with any message classes). Shared by the ROS node (rclpy's classes, `ros/`) and the
offline bag replay (rosbags' classes, `replay/`), so both give the same outputs. It may import the 3-D
geometry and the root helpers; it imports no ROS package (messages are duck-typed or built from the
classes handed in).
"""
