"""Static checks of the ROS packaging: package.xml files, interfaces, params.yaml, launch file, RViz config.

The launch file cannot be executed here (no `launch`/`launch_ros` on PyPI); it is parsed and checked for
the arguments and remappings the docs promise, and executed when `launch_ros` is importable.
"""
from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]


def _xml(path):
    return ET.parse(path).getroot()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # catkin_pkg's use of old pyparsing names
def test_python_package_xml():
    root = _xml(ROOT / "package.xml")
    assert root.get("format") == "3" and root.findtext("name") == "ros2_iterprime"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.iter() if e.tag.endswith("depend")}
    for dep in ["rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs", "diagnostic_msgs",
                "lifecycle_msgs", "ros2_iterprime_msgs", "launch_ros", "ament_index_python", "python3-numpy"]:
        assert dep in deps, dep
    assert "rviz2" not in deps, "headless robots must not pull in RViz"
    # tf2_ros (package tf2_ros_py) is optional: only target_frame needs it, and the node runs without it
    tf = [e for e in root.iter("exec_depend") if e.text == "tf2_ros_py"]
    assert len(tf) == 1 and tf[0].get("condition") == "$ITERPRIME_WITHOUT_TF != 1"
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    pkg = catkin_pkg.parse_package(str(ROOT / "package.xml"))
    for env, wanted in [({}, True), ({"ITERPRIME_WITHOUT_TF": "1"}, False)]:
        for dep in pkg.exec_depends:
            dep.evaluate_condition(env)
        assert any(d.name == "tf2_ros_py" and d.evaluated_condition for d in pkg.exec_depends) == wanted, env


def test_interface_package():
    pkg = ROOT / "ros2_iterprime_msgs"
    root = _xml(pkg / "package.xml")
    assert root.get("format") == "3" and root.findtext("name") == "ros2_iterprime_msgs"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert root.find("export/build_type").text == "ament_cmake"
    cmake = (pkg / "CMakeLists.txt").read_text()
    assert "rosidl_generate_interfaces" in cmake and '"msg/SegmentationResult.msg"' in cmake
    assert '"srv/Segment.srv"' in cmake
    msg = (pkg / "msg" / "SegmentationResult.msg").read_text()
    fields = {line.split()[1] for line in msg.splitlines() if line.strip() and not line.startswith("#")}
    assert {"header", "expression", "primary_word", "status", "message", "found", "confidence", "mask",
            "fallback_mask", "score", "bbox", "centroid_px", "centroid_3d", "depth_used", "rounds",
            "latency"} <= fields
    # the status constants are the ones the node publishes
    from ros2_iterprime.ros import outputs

    consts = {line.split()[1].split("=")[1] for line in msg.splitlines() if line.startswith("string STATUS_")}
    assert consts == set(outputs.STATUSES)
    req, resp = (ROOT / "ros2_iterprime_msgs" / "srv" / "Segment.srv").read_text().split("---")
    assert "sensor_msgs/Image image" in req and "string expression" in req
    assert "SegmentationResult result" in resp


def test_params_yaml_matches_the_declared_parameters():
    from ros2_iterprime.ros.parameters import PARAMETERS, check_value, cross_check

    params = yaml.safe_load((ROOT / "config" / "params.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        spec = PARAMETERS[name]
        assert check_value(name, value) is None, name
        assert value == spec.default, f"params.yaml and the declared default of {name} differ"
        desc = spec.descriptor(name)
        assert desc.description and desc.name == name, name
        if spec.choices:
            assert all(c in desc.additional_constraints for c in spec.choices)
    assert cross_check(params) is None


def _launch_args(tree):
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument" \
                and isinstance(node.args[0], ast.Constant):
            names.append(node.args[0].value)
    return names


def test_launch_file_declares_remappable_topics_and_options():
    src = (ROOT / "launch" / "segment.launch.py").read_text()
    tree = ast.parse(src)
    args = _launch_args(tree)
    from ros2_iterprime.ros.launch_support import LAUNCH_ONLY_ARGS

    assert sorted(args) == sorted(LAUNCH_ONLY_ARGS)  # the launch file's own arguments, as launch_support knows them
    # every node parameter (model, device, mode, the transports, target_frame, ...) is declared from the
    # tested table, with '' (= not set) as its default
    assert ('DeclareLaunchArgument(name, default_value="", description=description, choices=choices)\n'
            '             for name, description, choices in parameter_launch_arguments()') in src
    assert "unknown_arguments_message(command_line_arguments(context.argv))" in src
    assert 'executable="iterprime_node"' in src and 'package="ros2_iterprime"' in src
    assert 'TOPICS = ("image", "depth", "camera_info", "referring_expression")' in src
    assert "remappings=[(t, get(t)) for t in TOPICS]" in src
    # parameters come from the tested launch_support rule; launch defaults never override the file
    assert "parameters = node_parameters(get(\"params_file\"), {k: get(k) for k in LAUNCH_PARAMETER_ARGS})" in src
    defaults = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument" \
                and isinstance(node.args[0], ast.Constant):
            kw = {k.arg: k.value for k in node.keywords}
            defaults[node.args[0].value] = kw["default_value"].value if isinstance(kw["default_value"],
                                                                                   ast.Constant) else None
            if node.args[0].value in ("use_rviz", "respawn"):
                assert "choices" in kw, node.args[0].value
    assert defaults["namespace"] == ""
    # failure visible: a node that exits shuts the launch down (unless respawned); RViz optional
    assert "on_exit=None if respawn else _on_node_exit" in src and "raise RuntimeError(failure)" in src
    assert "rviz_available(" in src and "rviz.launch.py" in src
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in src, "the env var name is chosen per distro in launch_support"
    rviz_src = (ROOT / "launch" / "rviz.launch.py").read_text()
    assert 'package="rviz2"' in rviz_src
    try:
        import launch_ros  # noqa: F401
    except ImportError:
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location("segment_launch", ROOT / "launch" / "segment.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.generate_launch_description().entities  # pragma: no cover - real ROS 2 installs only


def test_rviz_config_shows_the_node_outputs():
    cfg = yaml.safe_load((ROOT / "rviz" / "iterprime.rviz").read_text())
    topics = {d["Topic"]["Value"]: d["Class"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics == {
        "/iterprime/overlay": "rviz_default_plugins/Image",
        "/iterprime/mask": "rviz_default_plugins/Image",
        "/iterprime/markers": "rviz_default_plugins/MarkerArray",
        "/iterprime/centroid": "rviz_default_plugins/PointStamped",
        "/iterprime/points": "rviz_default_plugins/PointCloud2",
        "/iterprime/pose": "rviz_default_plugins/Pose",
    }


def test_fastdds_profile_is_loopback_only():
    root = _xml(ROOT / "config" / "fastdds_localhost.xml")
    ns = {"d": "http://www.eprosima.com"}
    names = [e.get("name") for e in root.findall(".//d:allowlist/d:interface", ns)]
    assert names == ["127.0.0.1"]
    assert root.find(".//d:useBuiltinTransports", ns).text == "false"
    assert int(root.find(".//d:segment_size", ns).text) >= 8 * 1024 * 1024


def test_parameter_rules_match_the_library():
    from ros2_iterprime.geometry.pointcloud import MIN_VOXEL_SIZE, CloudParams
    from ros2_iterprime.ros.parameters import check_value

    assert check_value("voxel_size", 0.0) is None and check_value("voxel_size", 0.005) is None
    assert "voxel_size" in check_value("voxel_size", MIN_VOXEL_SIZE / 2)
    CloudParams(voxel_size=0.005)  # what the node accepts, the library accepts
    assert check_value("alpha", float("nan")) and check_value("no_such", 1) and check_value("mode", "track") is None


def test_tracker_cost_knob_parameters():
    from ros2_iterprime.ros.parameters import PARAMETERS, check_value

    for name in ("tracker_image_size", "tracker_memory_frames"):
        spec = PARAMETERS[name]
        assert spec.default == 0 and spec.read_only and "docs/tracking.md" in spec.description
    assert check_value("tracker_image_size", 0) is None and check_value("tracker_image_size", 512) is None
    assert check_value("tracker_image_size", 96) is None  # tiny models; full-size ones refuse it at load
    assert "multiple of 32" in check_value("tracker_image_size", 500)
    assert "[0, 2048]" in check_value("tracker_image_size", 4096)
    assert check_value("tracker_memory_frames", 3) is None and "[0, 64]" in check_value("tracker_memory_frames", -1)
    assert "must be a int" in check_value("tracker_memory_frames", "7")
