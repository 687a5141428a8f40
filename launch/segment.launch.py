"""Launch the ros2_iterprime node (and optionally RViz).

    ros2 launch ros2_iterprime segment.launch.py
    ros2 launch ros2_iterprime segment.launch.py model:=tiny-random image:=/camera/color/image_raw \
        depth:=/camera/aligned_depth_to_color/image_raw camera_info:=/camera/color/camera_info use_rviz:=true
    ros2 topic pub -1 /referring_expression std_msgs/String "{data: 'the red cup behind the laptop'}"

Topic arguments are remappings of the node's relative names (image, depth, camera_info,
referring_expression), so the node can be pointed at any camera driver (RealSense, ZED, Isaac ROS)
without code changes, as yolo_ros does. Launch arguments override the same keys of `params_file`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _fastdds_profile(context, *args, **kwargs):
    """fastdds_profile:=localhost uses the shipped loopback profile (config/fastdds_localhost.xml)."""
    value = LaunchConfiguration("fastdds_profile").perform(context).strip()
    if not value:
        return []
    if value == "localhost":
        value = os.path.join(get_package_share_directory("ros2_iterprime"), "config", "fastdds_localhost.xml")
    return [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", value),
            SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", value)]  # Humble / Iron name


def generate_launch_description():
    share = get_package_share_directory("ros2_iterprime")
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("node_name", default_value="iterprime", description="Name of the node"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "params.yaml"),
                              description="YAML parameter file (all parameters: config/params.yaml)"),
        DeclareLaunchArgument("model", default_value="default",
                              description="Model profile: default | large | tiny-random"),
        DeclareLaunchArgument("device", default_value="auto", description="torch device: auto | cpu | cuda[:N]"),
        DeclareLaunchArgument("mode", default_value="on_command", description="on_command | continuous"),
        DeclareLaunchArgument("image", default_value="image", description="Colour image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("depth", default_value="depth",
                              description="Depth image registered to the colour image (16UC1 mm / 32FC1 m)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="CameraInfo of the colour/depth image"),
        DeclareLaunchArgument("referring_expression", default_value="referring_expression",
                              description="Expression topic (std_msgs/String)"),
        DeclareLaunchArgument("fastdds_profile", default_value="",
                              description="'' (leave DDS alone), 'localhost' (shipped loopback profile: large "
                                          "best-effort images between processes on one host) or a path"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="Start RViz with rviz/iterprime.rviz"),
        DeclareLaunchArgument("rviz_config", default_value=os.path.join(share, "rviz", "iterprime.rviz"),
                              description="RViz configuration"),
    ]
    node = Node(
        package="ros2_iterprime",
        executable="iterprime_node",
        name=LaunchConfiguration("node_name"),
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model": LaunchConfiguration("model"),
                "device": LaunchConfiguration("device"),
                "mode": LaunchConfiguration("mode"),
            },
        ],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("depth", LaunchConfiguration("depth")),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("referring_expression", LaunchConfiguration("referring_expression")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="iterprime_rviz",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
        output="log",
    )
    return LaunchDescription(args + [OpaqueFunction(function=_fastdds_profile), node, rviz])
