"""Where Jazzy (rclpy 7) and Kilted (rclpy 9) differ, the difference itself, on the distribution this venv holds.

`bash scripts/test.sh` runs this file in the default (Jazzy) venv and again in the Kilted venv, so each
distribution's side of every difference is checked on real wheels:

- MessageInfo: Kilted adds ``publisher_gid``; Jazzy has none, and the expression inbox must still let the
  newest sample of a latched burst win with Jazzy-shaped infos (real ones, taken from DDS here);
- Fast DDS 2 (Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE, Fast DDS 3 (Kilted) only
  FASTDDS_DEFAULT_PROFILES_FILE: the library in this venv must contain the name we set;
- QoS event callbacks (incompatible QoS, which the expression input silences) fire on both with the
  same fields;
- the node names its distribution at start-up and warns about what differs (no publisher GID on Jazzy).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402

pytestmark = [pytest.mark.ros]
rh.skip_without_rclpy()

from ros2_iterprime.ros.distro import (  # noqa: E402
    fastdds_profile_variable,
    rclpy_features,
    ros_distro,
    startup_report,
    unavailable_features,
)
from ros2_iterprime.ros.inputs import ExpressionInbox  # noqa: E402

RCLPY_MAJOR = {"jazzy": 7, "kilted": 9}


def _venv_record() -> str | None:
    rec = Path(sys.prefix) / ".iterprime-ros-distro"
    return rec.read_text().strip() if rec.exists() else None


def test_the_distribution_is_the_one_the_venv_was_built_for():
    distro, feats = ros_distro(), rclpy_features()
    assert distro in RCLPY_MAJOR, distro
    if _venv_record() is not None:
        assert distro == _venv_record()
    assert int(feats.version.split(".")[0]) == RCLPY_MAJOR[distro], (distro, feats.version)
    assert feats.publisher_gid == (distro == "kilted")


@pytest.fixture
def client():
    c = rh.RosClient(rh.pick_domain_id(), name="iterprime_distro_probe")
    yield c
    c.close()


def _real_infos(c, n: int, latched: bool):
    """Publish n strings and return the MessageInfo dicts rclpy hands a two-argument callback."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    durability = DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE
    qos = QoSProfile(depth=n, reliability=ReliabilityPolicy.RELIABLE, durability=durability)
    got = []
    topic = f"/distro_probe_{int(latched)}"
    c.node.create_subscription(String, topic, lambda msg, info: got.append((msg.data, info)), qos)
    pub = c.node.create_publisher(String, topic, qos)
    c.wait_subscribers(pub)
    for i in range(n):
        pub.publish(String(data=str(i)))
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(got) == n, f"{len(got)} of {n} samples"
    return [info for _, info in sorted(got, key=lambda t: int(t[0]))]


def test_message_info_has_a_publisher_gid_exactly_on_kilted(client):
    infos = _real_infos(client, 3, latched=False)
    for info in infos:
        assert isinstance(info["source_timestamp"], int) and info["source_timestamp"] > 0
        assert "publication_sequence_number" in info
    if ros_distro() == "kilted":
        gids = {bytes(i["publisher_gid"]["data"]) for i in infos}
        assert len(gids) == 1 and len(next(iter(gids))) >= 12  # one publisher, an RTPS GUID
    else:
        assert "publisher_gid" not in infos[0], sorted(infos[0])
    # the node's start-up report follows the same probe
    lines = unavailable_features(rclpy_features(), ros_distro())
    assert bool(lines) == ("publisher_gid" not in infos[0])


def test_latched_backlog_order_newest_wins_with_this_distros_real_infos(client):
    """The order a latched publisher's samples reach the node through its two readers (ExpressionInbox):
    the transient-local reader's newest sample first, then the volatile reader's backlog."""
    infos = _real_infos(client, 12, latched=True)
    inbox = ExpressionInbox()
    deliveries = [(10, True), (11, True)] + [(i, False) for i in range(2, 12)]
    active = None
    for i, latched in deliveries:
        if inbox.accept(dict(infos[i]), latched):
            active = i
    assert active == 11
    # the volatile reader alone (no latched publisher): every sample in order
    inbox = ExpressionInbox()
    assert all(inbox.accept(dict(info), False) for info in infos)


def test_live_samples_of_a_slower_clock_are_kept_where_a_gid_allows_it():
    """What the missing GID costs on Jazzy, stated as a test: B's clock runs 5 s behind A's latched sample."""
    def info(gid, seq, src):
        d = {"publication_sequence_number": seq, "source_timestamp": src, "received_timestamp": 0}
        if gid is not None:
            d["publisher_gid"] = {"implementation_identifier": "rmw_fastrtps_cpp", "data": bytes([gid] * 16)}
        return d

    kilted, jazzy = ExpressionInbox(), ExpressionInbox()
    assert kilted.accept(info(1, 1, 10_000), latched=True) and jazzy.accept(info(None, 1, 10_000), latched=True)
    assert kilted.accept(info(2, 1, 5_000))          # per-publisher rule: B's newer sample wins
    assert not jazzy.accept(info(None, 1, 5_000))    # no GID: older than the newest latched sample
    assert jazzy.accept(info(None, 2, 10_001))       # once B's clock passes it, B wins again


def _fastdds_library() -> Path | None:
    for pattern in ("libfastrtps.so.*", "libfastdds.so.*"):
        found = sorted((Path(sys.prefix) / "lib").glob(pattern))
        if found:
            return found[0]
    return None


def test_the_profile_variable_is_the_one_this_fast_dds_reads():
    lib = _fastdds_library()
    if lib is None:
        pytest.skip("not a pip venv: Fast DDS is the system's (a real install sets ROS_DISTRO)")
    data = lib.read_bytes()
    want = fastdds_profile_variable()
    other = ({"FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"} - {want}).pop()
    assert want.encode() in data, f"{lib.name} does not read {want}"
    assert other.encode() not in data, f"{lib.name} also reads {other}"
    assert ("fastrtps" in lib.name) == (ros_distro() == "jazzy")


def test_incompatible_qos_events_fire_with_the_same_fields(client):
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.qos import DurabilityPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    events = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    client.node.create_subscription(String, "/distro_qos", lambda m: None, latched,
                                    event_callbacks=SubscriptionEventCallbacks(incompatible_qos=events.append))
    client.node.create_publisher(String, "/distro_qos", 10)  # volatile: cannot serve a transient-local reader
    deadline = time.monotonic() + 20
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events, "no incompatible-QoS event"
    ev = events[0]
    assert ev.total_count >= 1 and ev.total_count_change >= 1
    assert int(ev.last_policy_kind) == int(QoSPolicyKind.DURABILITY)


def test_the_node_names_its_distribution_at_start_up():
    head, lines = startup_report()
    assert f"ROS 2 {ros_distro()}" in head and fastdds_profile_variable() in head
    node = rh.NodeProcess(rh.pick_domain_id(), params={"use_depth": "false"})
    try:
        node.wait_ready()
        log = node.log()
        assert f"ROS 2 {ros_distro()} (rclpy {rclpy_features().version})" in log
        assert ("no publisher GID" in log) == (ros_distro() == "jazzy")
    finally:
        assert node.stop() == 0
