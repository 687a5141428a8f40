"""Helpers for the DDS tests: spawn `iterprime_node` as a real process and talk to it over DDS.

DDS stays on this machine: every process gets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (Kilted ignores
ROS_LOCALHOST_ONLY), its own random ROS_DOMAIN_ID, and the loopback Fast DDS transport profile
(config/fastdds_localhost.xml) without which large best-effort images are silently lost, under the
variable name the venv's Fast DDS reads (Jazzy: FASTRTPS_..., Kilted: FASTDDS_...).
The node is stopped with SIGINT and waited for (kill -9 leaks Fast DDS /dev/shm segments).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "config" / "params.yaml"
FASTDDS_PROFILE = ROOT / "config" / "fastdds_localhost.xml"


def fastdds_profile_variable() -> str:
    """FASTRTPS_DEFAULT_PROFILES_FILE (Fast DDS 2: Jazzy) or FASTDDS_DEFAULT_PROFILES_FILE (Fast DDS 3: Kilted)."""
    from ros2_iterprime.ros.distro import fastdds_profile_variable as variable

    return variable()

_used_domains: set[int] = set()


def pick_domain_id() -> int:
    """A random domain in [20, 220] not used yet by this process (other test runs may share the host)."""
    rng = random.Random(os.getpid() * 7919 + time.monotonic_ns())
    while True:
        d = rng.randint(20, 220)
        if d not in _used_domains:
            _used_domains.add(d)
            return d


def configure_this_process() -> None:
    """Environment of the test process itself; must run before the first DDS participant exists."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault(fastdds_profile_variable(), str(FASTDDS_PROFILE))
    os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the discovery range


def node_env(domain_id: int, log_dir: str) -> dict:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_LOG_DIR=log_dir,
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
    )
    env[fastdds_profile_variable()] = str(FASTDDS_PROFILE)
    env.setdefault("HOME", log_dir)
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


def node_command() -> list[str]:
    exe = Path(sys.executable).with_name("iterprime_node")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("iterprime_node")
    return [found] if found else [sys.executable, "-m", "ros2_iterprime.node"]


class NodeProcess:
    """`iterprime_node --ros-args --params-file config/params.yaml -p model:=tiny-random -p ...`."""

    def __init__(self, domain_id: int, params: dict | None = None, remaps: dict | None = None,
                 name: str = "iterprime", model: str = "tiny-random", env: dict | None = None,
                 command: list[str] | None = None):
        self.domain_id = domain_id
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="iterprime_node_")
        self.log_path = Path(self.tmp) / "node.log"
        args = ["--ros-args", "--params-file", str(PARAMS_FILE), "-p", f"model:={model}"]
        for k, v in (params or {}).items():
            args += ["-p", f"{k}:={v}"]
        for k, v in (remaps or {}).items():
            args += ["-r", f"{k}:={v}"]
        self.cmd = (command or node_command()) + args  # command: e.g. tests/sim_node.py (a model stand-in)
        self._log = open(self.log_path, "w")
        penv = {**node_env(domain_id, self.tmp), **(env or {})}  # env: extra variables (e.g. HF_HOME)
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=penv, cwd=str(ROOT))

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready:" in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"node not ready after {timeout} s:\n{self.log()[-4000:]}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT, then wait (SIGTERM / SIGKILL only if it hangs). Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()
        return self.proc.returncode


class RosClient:
    """A test-side rclpy node in its own context and domain, spun in a background thread."""

    def __init__(self, domain_id: int, name: str = "iterprime_test_client"):
        configure_this_process()
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Condition()
        self.received: dict[str, list] = {}
        self.arrival: dict[str, list] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutting down
                if self._stop:
                    return

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def collect(self, topic: str, msg_type, qos=None) -> str:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = qos or QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.received[topic] = []
        self.arrival[topic] = []

        def cb(msg, topic=topic):
            with self._lock:
                self.received[topic].append(msg)
                self.arrival[topic].append(self.now_ns())
                self._lock.notify_all()

        self.node.create_subscription(msg_type, topic, cb, qos)
        return topic

    def clear(self) -> None:
        with self._lock:
            for k in self.received:
                self.received[k] = []
                self.arrival[k] = []

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    counts = {k: len(v) for k, v in self.received.items()}
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; received {counts}")
                self._lock.wait(min(left, 0.1))

    def first(self, topic: str, where=lambda m: True, timeout: float = 20.0):
        return self.wait_for(lambda: next((m for m in self.received.get(topic, []) if where(m)), None),
                             timeout, f"a message on {topic}")

    def wait_subscribers(self, publisher, n: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while publisher.get_subscription_count() < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"no subscriber on {publisher.topic_name} after {timeout} s")
            time.sleep(0.05)

    def wait_publishers(self, topic: str, n: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.node.count_publishers(topic) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"no publisher on {topic} after {timeout} s")
            time.sleep(0.05)

    def input_publishers(self):
        """(image publisher on /image with sensor-data QoS, reliable expression publisher on
        /referring_expression), both matched with the node's subscriptions."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        img_pub = self.node.create_publisher(Image, "/image", qos_profile_sensor_data)
        expr_pub = self.node.create_publisher(String, "/referring_expression",
                                              QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.wait_subscribers(img_pub)
        self.wait_subscribers(expr_pub)
        return img_pub, expr_pub

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


# ------------------------------------------------------------------------------------------ data
def make_image_msg(width: int, height: int, stamp_ns: int, frame_id: str = "camera_color_optical_frame",
                   encoding: str = "rgb8", seed: int = 0):
    """A synthetic scene (gradient background + a bright square) as a sensor_msgs/Image."""
    from std_msgs.msg import Header

    from ros2_iterprime.ros.image import numpy_to_msg

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)),
                    np.full_like(xx, 96)], axis=2).astype(np.uint8)
    x0, y0 = width // 3, height // 3
    img[y0: y0 + height // 4, x0: x0 + width // 5] = rng.integers(180, 255, 3, endpoint=True)
    if encoding == "bgr8":
        img = img[:, :, ::-1]
    hdr = Header(frame_id=frame_id)
    hdr.stamp.sec, hdr.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return numpy_to_msg(np.ascontiguousarray(img), encoding, header=hdr)


def headers_equal(a, b) -> bool:
    return (a.frame_id == b.frame_id and a.stamp.sec == b.stamp.sec and a.stamp.nanosec == b.stamp.nanosec)


def skip_without_rclpy():
    try:
        import rclpy  # noqa: F401
        import sensor_msgs.msg  # noqa: F401
    except Exception as exc:  # pragma: no cover
        pytest.skip(f"rclpy / ROS messages not importable: {exc}")
