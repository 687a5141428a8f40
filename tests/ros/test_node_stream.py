"""Real-DDS tests of the node's frame policy and start-up failure.

* A 30 Hz 640x480 stream while the model is slow (continuous mode, 'automatic' SAM proposals with a
  32x32 point grid on tiny-random: a real knob, ~0.3-1.5 s per frame on 2 shared CPU cores): the node processes only the newest frame, so the
  delay from a frame's stamp to its result stays bounded by about two model runs instead of growing
  with the stream (no backlog), stops promptly when the stream stops, and counts the dropped frames.
* A model that cannot be loaded: one clear error naming the model and how to fetch it, exit code != 0.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
rh.skip_without_rclpy()

from std_msgs.msg import String  # noqa: E402

NS = "/iterprime"
STREAM_S = 6.0
STREAM_MAX_S = 90.0
RATE_HZ = 30.0


def test_30hz_stream_with_slow_model_has_bounded_delay_and_counts_drops():
    domain = rh.pick_domain_id()
    # max_frame_age 0: on a loaded machine a run can outlast the stream by more than the default 2 s, and the
    # newest frame must still be processed once (not skipped as stale) for "stops promptly" to be checked
    node = rh.NodeProcess(domain, params={"mode": "continuous", "max_rate_hz": 0.0, "proposals": "automatic",
                                          "points_per_side": 32, "use_depth": "false", "max_frame_age": 0.0})
    c = rh.RosClient(domain)
    try:
        node.wait_ready()
        c.collect(f"{NS}/result_json", String)
        img_pub, expr_pub = c.input_publishers()
        c.wait_publishers(f"{NS}/result_json")
        expr_pub.publish(String(data="the person on the left"))
        time.sleep(0.3)

        msg = rh.make_image_msg(640, 480, 0)
        sent: list[int] = []
        t0 = time.monotonic()
        period = 1.0 / RATE_HZ
        # at least STREAM_S, and on a loaded CI machine (one slow-model run can take many seconds) until 3
        # results came back, at most STREAM_MAX_S: every bound below is relative to the measured model time
        while (time.monotonic() - t0 < STREAM_S
               or (len(c.received[f"{NS}/result_json"]) < 3 and time.monotonic() - t0 < STREAM_MAX_S)):
            stamp = c.now_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            img_pub.publish(msg)
            sent.append(stamp)
            next_t = t0 + len(sent) * period
            time.sleep(max(0.0, next_t - time.monotonic()))
        stream_end = c.now_ns()
        achieved_hz = len(sent) / (time.monotonic() - t0)

        # results still running when the stream stopped come in within one model run
        time.sleep(0.5)
        # a loaded machine (other jobs on the 2 cores) can make each run several seconds: wait for that
        c.wait_for(lambda: len(c.received[f"{NS}/result_json"]) >= 3, 180, "3 results")
        results = [json.loads(m.data) for m in c.received[f"{NS}/result_json"]]
        proc = max(r["processing_time"] for r in results)
        time.sleep(2 * proc + 1.5)
        results = [json.loads(m.data) for m in c.received[f"{NS}/result_json"]]
        arrivals = list(c.arrival[f"{NS}/result_json"])
    finally:
        c.close()
        code = node.stop()
    log = node.log()
    assert code == 0 and "Traceback" not in log, log[-3000:]

    assert achieved_hz > 20, f"the test could only publish at {achieved_hz:.1f} Hz"
    median_proc = sorted(r["processing_time"] for r in results)[len(results) // 2]
    assert median_proc > 0.1, (f"the model is not slow ({median_proc:.3f} s a frame): the test needs a knob "
                               f"that makes tiny-random slower than the 30 Hz stream")
    stamps = [r["stamp"]["sec"] * 1_000_000_000 + r["stamp"]["nanosec"] for r in results]
    assert all(s in set(sent) for s in stamps), "results must carry the stamps of frames we sent"
    assert len(set(stamps)) == len(stamps), "a frame was processed twice"
    proc = max(r["processing_time"] for r in results)
    bound_s = 2 * proc + 1.0
    delays = [(a - s) / 1e9 for a, s in zip(arrivals, stamps)]
    # bounded: no result is older than ~two model runs (a FIFO would reach ~STREAM_S by the end)
    assert max(delays) < bound_s, f"delays {delays} exceed {bound_s:.2f} s (processing up to {proc:.2f} s)"
    # no backlog: processing stopped within two model runs of the end of the stream (the run in progress,
    # then the newest frame)
    assert (arrivals[-1] - stream_end) / 1e9 < bound_s
    assert (stream_end - stamps[-1]) / 1e9 < bound_s, "the last result is not of a recent frame"
    # drops counted: every frame sent while the model was busy and then replaced
    dropped = results[-1]["dropped_frames"]
    assert len(results) < len(sent) / 3
    assert dropped >= len(sent) - 2 * len(results) - int(RATE_HZ * bound_s), (dropped, len(sent), len(results))
    assert dropped <= len(sent) - len(results)
    assert [r["dropped_frames"] for r in results] == sorted(r["dropped_frames"] for r in results)
    assert "dropped" in log and "model is slower than the image stream" in log


@pytest.mark.parametrize("params,named", [
    ({"model": "no-such-profile"}, ["no-such-profile", "tiny-random"]),  # bad profile: refused at start-up
    ({"model": "default", "vlm": "no-such-org/no-such-blip-model", "local_files_only": "true"},
     ["no-such-org/no-such-blip-model", "download", "tiny-random"]),  # missing weights (empty cache, offline)
])
def test_unloadable_model_logs_one_clear_error_and_exits_nonzero(params, named):
    domain = rh.pick_domain_id()
    tmp = tempfile.mkdtemp(prefix="iterprime_bad_model_")
    cmd = rh.node_command() + ["--ros-args", "--params-file", str(rh.PARAMS_FILE)]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    env = rh.node_env(domain, tmp)
    env["HF_HOME"] = str(Path(tmp) / "empty_hf_home")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=str(rh.ROOT))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1, out
    assert all(n in fatal[0] for n in named), fatal[0]


def test_rate_cap_is_not_reported_as_a_slow_model():
    """Continuous mode with a rate cap well below the model's speed on a 30 Hz stream: frames skipped to keep
    the cap are counted as rate-limited, never as dropped, and the slow-model warning does not fire.

    Robust to a loaded machine: the cap is set from the measured warm-up run (at most 2 Hz, and at least 4x
    the model's time per frame), and a frame may only ever count as dropped while a run longer than the cap
    period was in progress (the definition of "dropped"), which is checked result by result."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    domain = rh.pick_domain_id()
    node = rh.NodeProcess(domain, params={"mode": "continuous", "max_rate_hz": 2.0, "use_depth": "false",
                                          "diagnostics_period": 0.2})
    c = rh.RosClient(domain)
    try:
        node.wait_ready()
        c.collect(f"{NS}/result_json", String)
        img_pub, expr_pub = c.input_publishers()
        msg = rh.make_image_msg(320, 240, 0)
        # warm-up: the first run of a fresh process is slower (allocations, lazy init); only then stream
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(c.now_ns(), 1_000_000_000)
        img_pub.publish(msg)
        expr_pub.publish(String(data="the cup"))
        c.wait_for(lambda: c.received[f"{NS}/result_json"], 60, "the warm-up result")
        for _ in range(2):  # two more single frames: the model's time per frame on this machine now
            n_before = len(c.received[f"{NS}/result_json"])
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(c.now_ns(), 1_000_000_000)
            img_pub.publish(msg)
            c.wait_for(lambda: len(c.received[f"{NS}/result_json"]) > n_before, 60, "a warm-up result")
            time.sleep(0.6)
        warm_runs = [json.loads(m.data)["processing_time"] for m in c.received[f"{NS}/result_json"][1:]]
        cap = max(0.25, min(2.0, 1.0 / (4.0 * max(warm_runs))))
        cli = c.node.create_client(SetParameters, f"{NS}/set_parameters")
        assert cli.wait_for_service(timeout_sec=20)
        fut = cli.call_async(SetParameters.Request(parameters=[Parameter("max_rate_hz", value=cap).to_parameter_msg()]))
        c.wait_for(lambda: fut.done(), 20, "set_parameters")
        assert fut.result().results[0].successful
        time.sleep(1.0)
        warm = json.loads(c.received[f"{NS}/result_json"][-1].data)["dropped_frames"]
        log_from = len(node.log())
        c.clear()
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 4.0:
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(c.now_ns(), 1_000_000_000)
            img_pub.publish(msg)
            n += 1
            time.sleep(max(0.0, t0 + n / RATE_HZ - time.monotonic()))
        time.sleep(max(1.0, 2.0 / cap))
        results = [json.loads(m.data) for m in c.received[f"{NS}/result_json"]]
    finally:
        c.close()
        code = node.stop()
    log = node.log()
    assert code == 0 and "Traceback" not in log, log[-3000:]
    assert 2 <= len(results) <= cap * 5 + 2, (len(results), cap)  # never faster than the cap
    period = 1.0 / cap
    drops = [results[0]["dropped_frames"] - warm] + [b["dropped_frames"] - a["dropped_frames"]
                                                      for a, b in zip(results, results[1:])]
    slow_runs = [r["processing_time"] > 0.5 * period for r in results]
    for i, d in enumerate(drops):  # drops counted in result i happened during the run before it
        assert d >= 0
        if d > 0:
            assert i > 0 and slow_runs[i - 1], (f"frames counted as dropped while the model kept the cap "
                                                f"(runs {[r['processing_time'] for r in results]}, cap {cap:g} Hz)")
    if not any(slow_runs):
        assert sum(drops) == 0 and "slower than the image stream" not in log[log_from:]
