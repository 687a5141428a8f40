"""RViz with the ros2_iterprime display configuration (overlay, mask, target marker, centroid).

    ros2 launch ros2_iterprime rviz.launch.py            # on a machine with RViz (rviz2)

Separate from segment.launch.py so that headless robots never need RViz: run the node on the robot and
this file on a workstation in the same ROS domain. Set RViz's Fixed Frame to the camera's optical frame.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("ros2_iterprime")
    return LaunchDescription([
        DeclareLaunchArgument("rviz_config", default_value=os.path.join(share, "rviz", "iterprime.rviz"),
                              description="RViz configuration"),
        Node(package="rviz2", executable="rviz2", name="iterprime_rviz",
             arguments=["-d", LaunchConfiguration("rviz_config")], output="log"),
    ])
