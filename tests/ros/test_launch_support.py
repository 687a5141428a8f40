"""The rules behind launch/segment.launch.py (launch itself is not on PyPI; these functions are)."""
from __future__ import annotations

import pytest

from ros2_iterprime.ros.launch_support import (
    LAUNCH_ONLY_ARGS,
    LAUNCH_PARAMETER_ARGS,
    LaunchArgumentError,
    command_line_arguments,
    fastdds_environment,
    launched_directly,
    node_exit_failure,
    node_parameters,
    parameter_launch_arguments,
    rviz_available,
    unknown_arguments_message,
)
from ros2_iterprime.ros.parameters import PARAMETERS


def test_unset_launch_arguments_never_override_the_params_file():
    # the user gave only a params file: its model/mode/device stand
    assert node_parameters("/p/my.yaml", {"model": "", "device": "", "mode": ""}) == ["/p/my.yaml"]
    # whitespace is "not set" too
    assert node_parameters("/p/my.yaml", {"model": "  ", "mode": "\t"}) == ["/p/my.yaml"]


def test_set_launch_arguments_override_after_the_file():
    got = node_parameters("/p/my.yaml", {"model": "tiny-random", "device": "", "mode": "continuous"})
    assert got == ["/p/my.yaml", {"model": "tiny-random", "mode": "continuous"}]  # later entries win in launch_ros
    assert node_parameters("", {"device": "cuda:1"}) == [{"device": "cuda:1"}]


def test_only_parameter_arguments_reach_the_node():
    assert set(LAUNCH_PARAMETER_ARGS) == set(PARAMETERS) | {"use_sim_time"}
    assert not set(LAUNCH_ONLY_ARGS) & set(LAUNCH_PARAMETER_ARGS)
    got = node_parameters("f.yaml", {"model": "large", "image": "/camera/color/image_raw", "use_rviz": "true"})
    assert got == ["f.yaml", {"model": "large"}]


def test_every_node_parameter_given_on_the_line_reaches_the_node_typed():
    """target_frame:=base_link was silently ignored before: now every parameter is a launch argument."""
    given = {"target_frame": "base_link", "tf_timeout": "0.5", "max_points": "5000", "use_depth": "False",
             "image_transport": "compressed", "depth_transport": "compressedDepth", "alpha": "1",
             "use_sim_time": "true", "iterations": "", "vlm": "  "}
    got = node_parameters("p.yaml", given)
    assert got == ["p.yaml", {"target_frame": "base_link", "tf_timeout": 0.5, "max_points": 5000, "use_depth": False,
                              "image_transport": "compressed", "depth_transport": "compressedDepth",
                              "alpha": 1.0, "use_sim_time": True}]
    assert type(got[1]["alpha"]) is float and type(got[1]["max_points"]) is int  # as declared (rcl drops a mismatch)
    declared = {name: choices for name, _, choices in parameter_launch_arguments()}
    assert set(declared) == set(LAUNCH_PARAMETER_ARGS)
    assert declared["image_transport"] == ["", "raw", "compressed"]
    assert declared["depth_transport"] == ["", "raw", "compressedDepth"]
    assert declared["use_depth"] == ["", "true", "false"] and declared["target_frame"] is None


def test_values_the_node_would_refuse_are_refused_at_launch():
    for given, reason in [({"tf_timeout": "soon"}, "tf_timeout is a float"),
                          ({"max_points": "1.5"}, "max_points is a int"),
                          ({"alpha": "nan"}, "not finite"),
                          ({"alpha": "2.0"}, "alpha must be in [0, 1]"),
                          ({"use_depth": "maybe"}, "expected true or false"),
                          ({"image_transport": "theora"}, "image_transport must be one of raw, compressed")]:
        with pytest.raises(LaunchArgumentError, match=reason.replace("[", r"\[").replace("]", r"\]")):
            node_parameters("p.yaml", given)


def test_unknown_command_line_arguments_are_refused_with_the_accepted_list():
    argv = ["target_fram:=base_link", "model:=tiny-random", "launch-prefix:=gdb -ex run", "bogus:=1"]
    given = command_line_arguments(argv)
    assert given == {"target_fram": "base_link", "model": "tiny-random", "launch-prefix": "gdb -ex run", "bogus": "1"}
    msg = unknown_arguments_message(given)
    assert "'target_fram' (did you mean 'target_frame'?)" in msg and "'bogus'" in msg
    assert "model" not in msg.split("Accepted:")[0] and "launch-prefix" not in msg.split("Accepted:")[0]
    accepted = msg.split("Accepted: ")[1].split(", ")
    assert set(accepted) == set(LAUNCH_ONLY_ARGS) | set(LAUNCH_PARAMETER_ARGS)
    assert unknown_arguments_message(command_line_arguments(["image:=/cam", "target_frame:=base_link"])) is None


def test_only_the_launch_file_named_on_the_command_line_checks_the_arguments():
    me = "/opt/ros/jazzy/share/ros2_iterprime/launch/segment.launch.py"
    assert launched_directly(["/usr/bin/ros2", "launch", "ros2_iterprime", "segment.launch.py", "a:=1"], me)
    assert launched_directly(["/usr/bin/ros2", "launch", me, "a:=1"], me)
    # included from another launch file: the arguments on the line are that file's
    assert not launched_directly(["/usr/bin/ros2", "launch", "my_robot", "bringup.launch.py", "segment.launch.py:=x"], me)


def test_fastdds_profile_sets_exactly_one_variable_named_for_the_distro():
    share = "/opt/ws/share/ros2_iterprime"
    shipped = "/opt/ws/share/ros2_iterprime/config/fastdds_localhost.xml"
    assert fastdds_environment("", share, "kilted") == {}
    assert fastdds_environment("localhost", share, "kilted") == {"FASTDDS_DEFAULT_PROFILES_FILE": shipped}
    assert fastdds_environment("localhost", share, "rolling") == {"FASTDDS_DEFAULT_PROFILES_FILE": shipped}
    for old in ("humble", "iron", "jazzy"):  # Fast DDS 2.x reads only the FASTRTPS_ name
        assert fastdds_environment("localhost", share, old) == {"FASTRTPS_DEFAULT_PROFILES_FILE": shipped}
    assert fastdds_environment("/etc/my.xml", share, "kilted") == {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my.xml"}


def test_rviz_is_optional():
    def missing(pkg):
        raise LookupError(pkg)

    assert not rviz_available(which=lambda exe: None, package_share=missing)
    assert rviz_available(which=lambda exe: None, package_share=lambda pkg: "/opt/ros/kilted/share/rviz2")
    assert rviz_available(which=lambda exe: "/usr/bin/rviz2", package_share=missing)


def test_a_failed_node_fails_the_launch_but_ctrl_c_does_not():
    assert node_exit_failure(0, shutting_down=False) is None          # clean exit: plain shutdown
    assert "exited with code 1" in node_exit_failure(1, shutting_down=False)  # start-up error (missing weights)
    assert "signal 11" in node_exit_failure(-11, shutting_down=False)          # crash
    assert node_exit_failure(-2, shutting_down=True) is None          # Ctrl-C while the node was importing
    assert node_exit_failure(1, shutting_down=True) is None

