"""Pure functions behind launch/segment.launch.py (no `launch` import, so they are testable anywhere).

`launch` and `launch_ros` are not on PyPI; the launch file stays a thin shell over these functions, and
tests/ros/test_launch_support.py checks the rules on every machine.

The launch-argument rule: every node parameter (``parameters.PARAMETERS``, plus ``use_sim_time``) is a
launch argument whose default '' means "not set", so ``ros2 launch ros2_iterprime segment.launch.py
target_frame:=base_link`` reaches the node, after (and so over) the params file, while a parameter not
given keeps the params file's value. Values are converted to the parameter's type and validated by the
node's own rule before anything starts. A ``name:=value`` on the command line that is neither a node
parameter nor one of the launch file's own arguments is refused, with the accepted list.
"""
from __future__ import annotations

import difflib
import math
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .distro import fastdds_profile_variable, ros_distro
from .parameters import PARAMETERS, check_value

__all__ = ["LAUNCH_ONLY_ARGS", "LAUNCH_PARAMETER_ARGS", "LaunchArgumentError", "command_line_arguments",
           "fastdds_environment", "launched_directly", "node_exit_failure", "node_parameters",
           "parameter_launch_arguments", "rviz_available", "unknown_arguments_message"]

#: Launch arguments that set node parameters: every declared parameter and rclpy's use_sim_time. Their
#: launch default is '' (= "not set"): only values the user gave reach the node, so a params file's values
#: are never overridden by a launch default.
LAUNCH_PARAMETER_ARGS = tuple(PARAMETERS) + ("use_sim_time",)

#: The launch file's own arguments (not node parameters).
LAUNCH_ONLY_ARGS = ("namespace", "node_name", "params_file", "image", "depth", "camera_info",
                    "referring_expression", "fastdds_profile", "respawn", "respawn_delay", "use_rviz",
                    "rviz_config")

#: Set by `ros2 launch --launch-prefix ...` itself (launch_ros reads them for every node).
ROS2LAUNCH_ARGS = ("launch-prefix", "launch-prefix-filter")

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class LaunchArgumentError(ValueError):
    """A launch argument that cannot be used (unknown name, or a value the node would refuse)."""


def parameter_launch_arguments() -> list[tuple[str, str, list[str] | None]]:
    """(name, description, choices or None) of the launch argument of every node parameter.

    Choices include '' (not set); booleans get ['', 'true', 'false'].
    """
    out = []
    for name, spec in PARAMETERS.items():
        choices = None
        if spec.choices:
            choices = ["", *spec.choices]
        elif spec.type is bool:
            choices = ["", "true", "false"]
        default = str(spec.default).lower() if spec.type is bool else repr(spec.default)
        out.append((name, f"{spec.description} Default {default}; '' = as in params_file.", choices))
    out.append(("use_sim_time", "rclpy: use /clock. '' = as in params_file.", ["", "true", "false"]))
    return out


def _typed(name: str, text: str) -> Any:
    """The launch argument's text converted to the parameter's type (raises LaunchArgumentError)."""
    want = PARAMETERS[name].type if name in PARAMETERS else bool  # use_sim_time
    low = text.lower()
    try:
        if want is bool:
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise ValueError("expected true or false")
        if want is int:
            return int(text)
        if want is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError("not finite")
            return value
    except ValueError as exc:
        raise LaunchArgumentError(f"{name}:={text!r}: {name} is a {want.__name__} ({exc})") from None
    return text


def node_parameters(params_file: str, launch_values: Mapping[str, str]) -> list:
    """The node's ``parameters=[...]``: the params file, then only the launch arguments the user set.

    Args:
        params_file: path of the YAML parameter file ('' = none).
        launch_values: launch argument name -> performed value ('' when not given); names that are not
            node parameters (image, use_rviz, ...) are left out.
    Returns:
        e.g. ``["/share/config/params.yaml", {"model": "tiny-random", "tf_timeout": 0.5}]``, values typed as
        the parameters are declared; the dict is left out when empty.
    Raises:
        LaunchArgumentError: a value of the wrong type, or one the node's validation refuses.
    """
    out: list = []
    if params_file.strip():
        out.append(params_file.strip())
    overrides = {}
    for name, text in launch_values.items():
        if name not in LAUNCH_PARAMETER_ARGS or not isinstance(text, str) or not text.strip():
            continue
        value = _typed(name, text.strip())
        reason = check_value(name, value) if name in PARAMETERS else None
        if reason:
            raise LaunchArgumentError(f"{name}:={text.strip()!r}: {reason}")
        overrides[name] = value
    if overrides:
        out.append(overrides)
    return out


def command_line_arguments(argv: Iterable[str]) -> dict[str, str]:
    """``["a:=1", "b:=x"]`` (``LaunchContext.argv``: what ``ros2 launch`` got after the file) -> {a: "1", b: "x"}."""
    out = {}
    for token in argv:
        if isinstance(token, str) and ":=" in token:
            name, value = token.split(":=", 1)
            out[name.strip()] = value
    return out


def launched_directly(process_argv: Sequence[str], launch_file: str) -> bool:
    """True when this launch file is the one ``ros2 launch`` was started with (``sys.argv`` names it).

    Only then are the command-line arguments ours to check: an including launch file's arguments belong
    to it (``LaunchContext.argv`` is the top-level file's).
    """
    base = os.path.basename(launch_file)
    for token in process_argv:
        if ":=" in token:
            break
        if os.path.basename(token) == base:
            return True
    return False


def unknown_arguments_message(given: Iterable[str], accepted: Iterable[str] | None = None) -> str | None:
    """Why some command-line arguments are refused (with suggestions and the accepted list), or None."""
    accepted = sorted(set(accepted if accepted is not None else LAUNCH_ONLY_ARGS + LAUNCH_PARAMETER_ARGS))
    unknown = [g for g in given if g not in accepted and g not in ROS2LAUNCH_ARGS]
    if not unknown:
        return None
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.75)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (f"unknown launch argument(s) {', '.join(parts)}: not a launch argument nor a parameter of "
            f"iterprime_node. Accepted: {', '.join(accepted)}")


def fastdds_environment(profile: str, share_dir: str, distro: str | None = None) -> dict[str, str]:
    """Environment variables selecting a Fast DDS XML profile, named for the running distribution.

    Fast DDS 3 (Kilted and later) reads only ``FASTDDS_DEFAULT_PROFILES_FILE``; Fast DDS 2 (Humble, Iron,
    Jazzy) reads only ``FASTRTPS_DEFAULT_PROFILES_FILE`` (:mod:`.distro`). Exactly one of them is set.

    Args:
        profile: '' (leave DDS alone), 'localhost' (the shipped loopback profile) or a path.
        share_dir: the package's share directory (holds config/fastdds_localhost.xml).
        distro: ROS_DISTRO (default: the running one, :func:`.distro.ros_distro`).
    """
    value = profile.strip()
    if not value:
        return {}
    if value == "localhost":
        value = os.path.join(share_dir, "config", "fastdds_localhost.xml")
    return {fastdds_profile_variable(distro if distro is not None else ros_distro()): value}


def rviz_available(which: Callable[[str], str | None] = shutil.which,
                   package_share: Callable[[str], str] | None = None) -> bool:
    """True when RViz can be started: the ``rviz2`` package is installed (ament index) or on PATH.

    Headless robots (ros-base) have no RViz; the launch file then skips it with a warning instead of
    failing the whole launch.
    """
    if package_share is not None:
        try:
            package_share("rviz2")
            return True
        except Exception:  # PackageNotFoundError (ament_index_python) or a broken index
            pass
    return which("rviz2") is not None


def node_exit_failure(returncode: int, shutting_down: bool) -> str | None:
    """Why the node's exit is a failure of the whole launch, or None when it is not.

    ``launch`` ends ``ros2 launch`` with a non-zero status only when an exception reaches its
    LaunchService (a ``Shutdown`` action alone ends it with 0), so the launch file raises with this text.
    An exit while the launch is already shutting down (Ctrl-C: the node gets SIGINT, -2 if it was still
    importing) is the user's doing, never a failure.

    Args:
        returncode: the process's exit status (negative: killed by that signal).
        shutting_down: the launch context's ``is_shutdown``.
    """
    if returncode == 0 or shutting_down:
        return None
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
    return f"iterprime_node {how} (its log is above)"
