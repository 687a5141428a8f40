"""The rules behind launch/segment.launch.py (launch itself is not on PyPI; these functions are)."""
from __future__ import annotations

from ros2_iterprime.ros.launch_support import (
    LAUNCH_PARAMETER_ARGS,
    fastdds_environment,
    node_exit_failure,
    node_parameters,
    rviz_available,
)


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
    assert set(LAUNCH_PARAMETER_ARGS) == {"model", "device", "mode"}
    got = node_parameters("f.yaml", {"model": "large", "image": "/camera/color/image_raw", "use_rviz": "true"})
    assert got == ["f.yaml", {"model": "large"}]


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

