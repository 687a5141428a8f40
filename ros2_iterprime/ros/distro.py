"""Which ROS 2 distribution this process runs on, and what its rclpy can and cannot do.

The pip route installs rclpy for one distribution per venv (``scripts/setup.sh``: Jazzy by default, or
Kilted); a real install sets ``ROS_DISTRO`` in its ``setup.bash``. The differences between the two that
this package meets are named here once, so the node can say at start-up what is unavailable, and the
tests can check each difference itself (tests/ros/test_distro.py):

==============================  ==========================  ==========================
                                Jazzy (rclpy 7.1)           Kilted (rclpy 9.1)
==============================  ==========================  ==========================
``MessageInfo`` keys            source/received timestamp,  the same + ``publisher_gid``
                                publication/reception
                                sequence numbers
Fast DDS / profile variable     2.14, ``FASTRTPS_DEFAULT_   3.2, ``FASTDDS_DEFAULT_
                                PROFILES_FILE``              PROFILES_FILE``
QoS event callback argument     the raw rmw status struct   a ``QoS...Info`` object
``Executor.shutdown``           ``(timeout_sec)``           ``(timeout_sec, *, wait_for_threads)``
==============================  ==========================  ==========================

No rclpy import at module level: :func:`ros_distro` reads package metadata and the environment only.
"""
from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass

__all__ = ["DISTROS", "FAST_DDS_2_DISTROS", "RclpyFeatures", "fastdds_profile_variable", "rclpy_features",
           "ros_distro", "startup_report", "unavailable_features"]

#: Distributions the pip route installs (requirements-ros-<distro>.txt), default first.
DISTROS = ("jazzy", "kilted")

#: Distributions whose Fast DDS (2.x) reads FASTRTPS_DEFAULT_PROFILES_FILE; later ones (Fast DDS 3) read
#: FASTDDS_DEFAULT_PROFILES_FILE (each library holds only its own name: measured with `strings` on
#: libfastrtps.so.2.14.5 and libfastdds.so.3.2.2).
FAST_DDS_2_DISTROS = ("foxy", "galactic", "humble", "iron", "jazzy")

#: rclpy major version -> distribution, for a venv whose wheels are not named after their distribution.
_RCLPY_MAJOR = {3: "humble", 5: "iron", 7: "jazzy", 9: "kilted"}


def ros_distro(default: str = "") -> str:
    """The ROS 2 distribution of the rclpy this process imports ('jazzy', 'kilted', ...), lower case.

    Order: the PyPI wheel's name (``ros-<distro>-rclpy``: what the venv really holds), then
    ``ROS_DISTRO`` (a real install's setup.bash sets it), then rclpy's version, then ``default``.
    """
    names = []
    try:
        names = [str(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()]
    except Exception:  # pragma: no cover - a broken site-packages
        pass
    for name in names:
        if name.startswith("ros-") and name.endswith("-rclpy") and name.count("-") == 2:
            return name.split("-")[1]
    env = os.environ.get("ROS_DISTRO", "").strip().lower()
    if env:
        return env
    for dist in ("ros-rclpy", "rclpy"):
        try:
            major = int(importlib.metadata.version(dist).split(".")[0])
        except Exception:
            continue
        if major in _RCLPY_MAJOR:
            return _RCLPY_MAJOR[major]
    return default


def fastdds_profile_variable(distro: str | None = None) -> str:
    """The environment variable the distribution's Fast DDS reads its XML profile from."""
    distro = (distro if distro is not None else ros_distro()).strip().lower()
    return "FASTRTPS_DEFAULT_PROFILES_FILE" if distro in FAST_DDS_2_DISTROS else "FASTDDS_DEFAULT_PROFILES_FILE"


@dataclass(frozen=True)
class RclpyFeatures:
    """What the imported rclpy offers where Jazzy and Kilted differ.

    Attributes:
        publisher_gid: ``MessageInfo`` carries the sending publisher's GID (rclpy >= 9, Kilted).
            Without it a sample's sequence number cannot be tied to its publisher, so the expression
            input orders samples by source timestamp where Kilted uses (GID, sequence number).
        version: rclpy's version string.
    """

    publisher_gid: bool
    version: str


def rclpy_features() -> RclpyFeatures:
    """Probe the imported rclpy (imports it)."""
    import rclpy.subscription

    info = getattr(rclpy.subscription, "MessageInfo", None)  # a TypedDict since rclpy 8; absent in 7
    keys = set(getattr(info, "__annotations__", {}) or {})
    version = ""
    for dist in ("ros-rclpy", "rclpy"):
        try:
            version = importlib.metadata.version(dist)
            break
        except Exception:
            continue
    return RclpyFeatures(publisher_gid="publisher_gid" in keys, version=version)


def unavailable_features(features: RclpyFeatures, distro: str) -> list[str]:
    """One line per feature that works differently or not at all on this distribution (start-up log)."""
    out = []
    if not features.publisher_gid:
        out.append(f"rclpy {features.version or '?'} ({distro or 'unknown distribution'}) gives no publisher GID "
                   f"in MessageInfo: expression samples are ordered by source timestamp (a live sample older than "
                   f"the newest latched one is ignored; assumes synchronised clocks) instead of per publisher by "
                   f"sequence number")
    return out


def startup_report() -> tuple[str, list[str]]:
    """(one info line naming the distribution and rclpy, the :func:`unavailable_features` lines)."""
    distro, features = ros_distro(), rclpy_features()
    head = (f"ROS 2 {distro or 'unknown distribution'} (rclpy {features.version or '?'}); Fast DDS profile "
            f"variable {fastdds_profile_variable(distro)}")
    return head, unavailable_features(features, distro)
