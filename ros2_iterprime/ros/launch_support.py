"""Pure functions behind launch/segment.launch.py (no `launch` import, so they are testable anywhere).

`launch` and `launch_ros` are not on PyPI; the launch file stays a thin shell over these functions, and
tests/ros/test_launch_support.py checks the rules on every machine.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping

from .distro import fastdds_profile_variable, ros_distro

__all__ = ["LAUNCH_PARAMETER_ARGS", "fastdds_environment", "node_exit_failure", "node_parameters",
           "rviz_available"]

#: Launch arguments that set node parameters. Their launch default is '' (= "not set"): only values the
#: user gave on the command line reach the node, so a params file's values are never overridden by a
#: launch default.
LAUNCH_PARAMETER_ARGS = ("model", "device", "mode")


def node_parameters(params_file: str, launch_values: Mapping[str, str]) -> list:
    """The node's ``parameters=[...]``: the params file, then only the launch arguments the user set.

    Args:
        params_file: path of the YAML parameter file ('' = none).
        launch_values: launch argument name -> performed value ('' when not given).
    Returns:
        e.g. ``["/share/config/params.yaml", {"model": "tiny-random"}]``; the dict is left out when empty.
    """
    out: list = []
    if params_file.strip():
        out.append(params_file.strip())
    overrides = {k: v.strip() for k, v in launch_values.items()
                 if k in LAUNCH_PARAMETER_ARGS and isinstance(v, str) and v.strip()}
    if overrides:
        out.append(overrides)
    return out


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
