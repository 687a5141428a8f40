"""Launch the ros2_iterprime node (and RViz where it is installed).

    ros2 launch ros2_iterprime segment.launch.py
    ros2 launch ros2_iterprime segment.launch.py model:=tiny-random image:=/camera/color/image_raw \
        depth:=/camera/aligned_depth_to_color/image_raw camera_info:=/camera/color/camera_info use_rviz:=true
    ros2 topic pub -1 /referring_expression std_msgs/String "{data: 'the red cup behind the laptop'}"

Topic arguments are remappings of the node's relative names (image, depth, camera_info,
referring_expression), so the node can be pointed at any camera driver without code changes. With
``namespace:=robot1`` every relative name moves too: the expression topic becomes
``/robot1/referring_expression`` and the outputs ``/robot1/iterprime/...``.

Parameters: ``params_file`` holds them all; every node parameter is also a launch argument (``model``,
``device``, ``mode``, ``image_transport``, ``depth_transport``, ``target_frame``, ... and ``use_sim_time``)
that overrides the file ONLY when given on the command line (its default '' means "not set"); values are
typed and validated before anything starts. A ``name:=value`` that is neither is refused with the list of
accepted arguments (``ros2 launch ros2_iterprime segment.launch.py -s`` lists them).

Compressed cameras: ``image_transport:=compressed`` subscribes to ``<image>/compressed`` (JPEG/PNG) and
``depth_transport:=compressedDepth`` to ``<depth>/compressedDepth``, as image_transport names them.

Failure is visible: when the node exits with an error (e.g. the model's weights are missing), the
launch shuts down and ``ros2 launch`` exits non-zero. ``respawn:=true`` instead restarts a node that
died (after ``respawn_delay`` seconds), for unattended robots. ``use_rviz:=true`` on a machine without
RViz (ros-base, headless robots) logs a warning and skips it; RViz alone: ``rviz.launch.py``.
"""
import os
import sys

import launch.logging
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction, \
    SetEnvironmentVariable, Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ros2_iterprime.ros.launch_support import LAUNCH_PARAMETER_ARGS, LaunchArgumentError, \
    command_line_arguments, fastdds_environment, launched_directly, node_exit_failure, node_parameters, \
    parameter_launch_arguments, rviz_available, unknown_arguments_message

TOPICS = ("image", "depth", "camera_info", "referring_expression")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _on_node_exit(event, context):
    """The node exited: end the launch; with an error (``ros2 launch`` exits 1) when the node failed."""
    failure = node_exit_failure(event.returncode, context.is_shutdown)
    if failure:
        raise RuntimeError(failure)  # the only way launch turns into a non-zero exit status
    return [Shutdown(reason="iterprime_node exited")]


def _setup(context, *args, **kwargs):
    share = get_package_share_directory("ros2_iterprime")
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    if launched_directly(sys.argv, __file__):  # an including file's arguments are its own business
        refused = unknown_arguments_message(command_line_arguments(context.argv))
        if refused:
            raise LaunchArgumentError(refused)
    parameters = node_parameters(get("params_file"), {k: get(k) for k in LAUNCH_PARAMETER_ARGS})
    actions = [SetEnvironmentVariable(k, v)
               for k, v in fastdds_environment(get("fastdds_profile"), share).items()]
    respawn = _truthy(get("respawn"))
    node = Node(
        package="ros2_iterprime",
        executable="iterprime_node",
        name=get("node_name"),
        namespace=get("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=parameters,
        remappings=[(t, get(t)) for t in TOPICS],
        respawn=respawn,
        respawn_delay=float(get("respawn_delay")),
        # a node that exits (start-up failure, crash) ends the launch with an error, unless respawned
        on_exit=None if respawn else _on_node_exit,
    )
    actions.append(node)
    if _truthy(get("use_rviz")):
        if rviz_available(package_share=get_package_share_directory):
            actions.append(IncludeLaunchDescription(
                PythonLaunchDescriptionSource(os.path.join(share, "launch", "rviz.launch.py")),
                launch_arguments={"rviz_config": get("rviz_config")}.items()))
        else:
            launch.logging.get_logger("launch.user").warning(
                "use_rviz:=true but RViz (rviz2) is not installed on this machine: "
                "skipping it (run rviz.launch.py on a machine with RViz)")
    return actions


def generate_launch_description():
    share = get_package_share_directory("ros2_iterprime")
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node (moves the relative topics too)"),
        DeclareLaunchArgument("node_name", default_value="iterprime", description="Name of the node"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "params.yaml"),
                              description="YAML parameter file (all parameters: config/params.yaml)"),
        DeclareLaunchArgument("image", default_value="image",
                              description="Colour image topic (sensor_msgs/Image); with image_transport:=compressed "
                                          "the node reads <image>/compressed"),
        DeclareLaunchArgument("depth", default_value="depth",
                              description="Depth image registered to the colour image (16UC1 mm / 32FC1 m); with "
                                          "depth_transport:=compressedDepth the node reads <depth>/compressedDepth"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="CameraInfo of the colour/depth image"),
        DeclareLaunchArgument("referring_expression", default_value="referring_expression",
                              description="Expression topic (std_msgs/String), relative to namespace"),
        DeclareLaunchArgument("fastdds_profile", default_value="",
                              description="'' (leave DDS alone), 'localhost' (shipped loopback profile: large "
                                          "best-effort images between processes on one host; the camera driver "
                                          "needs it too) or a path"),
        DeclareLaunchArgument("respawn", default_value="false", choices=["true", "false"],
                              description="Restart the node when it dies (instead of ending the launch)"),
        DeclareLaunchArgument("respawn_delay", default_value="2.0", description="Seconds before a respawn"),
        DeclareLaunchArgument("use_rviz", default_value="false", choices=["true", "false"],
                              description="Start RViz with rviz_config (skipped with a warning if not installed)"),
        DeclareLaunchArgument("rviz_config", default_value=os.path.join(share, "rviz", "iterprime.rviz"),
                              description="RViz configuration"),
    ]
    # every node parameter (model, device, mode, image_transport, depth_transport, target_frame, ...):
    # '' = not set, so the params file keeps its value
    args += [DeclareLaunchArgument(name, default_value="", description=description, choices=choices)
             for name, description, choices in parameter_launch_arguments()]
    return LaunchDescription(args + [OpaqueFunction(function=_setup)])
