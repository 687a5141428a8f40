"""Demo client for a running `iterprime_node`: publish a generated image + an expression, print the result,
save the mask and overlay as PNGs. Used by scripts/demo.sh; exits non-zero when no result arrives.

    python -m ros2_iterprime.ros.demo_client --expression "the red square" --out outputs/demo
    python -m ros2_iterprime.ros.demo_client --scene data/coffee.jpg --expression "the coffee cup" ...
    python -m ros2_iterprime.ros.demo_client --track 8 ...   # node in mode track: a moving-object stream

With ``--track SECONDS`` it streams a 640x480 scene whose red square moves, at ``--rate`` Hz, for at least
that long and on (up to ``--timeout``) until a tracked frame came back, sends the expression after the
first frame, and reports how many frames came back from grounding and from
tracking, the per-frame model time and the stamp-to-result latency (exit 1 without tracked frames).

Uses the caller's ROS environment (ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE, FASTDDS_DEFAULT_PROFILES_FILE).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

#: --track: where the square starts (px) and how fast it moves (px per frame). The seeded tiny-random model
#: "finds" the red square only at some positions (random weights: measured, at 640x480 it does for shifts
#: 73-88 px); the stream starts inside that run, so the first grounding seeds a track on every run instead
#: of depending on a later re-grounding landing on a lucky frame. Real weights find it anywhere.
TRACK_START_SHIFT = 76
TRACK_SPEED_PX = 1


def make_scene(width: int, height: int, shift: int = 0) -> np.ndarray:
    """A simple table-top scene: gradient background, a red square (moved right by ``shift`` px), a blue
    disc, a green bar."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([120 + 60 * xx / width, 120 + 60 * yy / height, np.full(xx.shape, 140.0)], 2)
    s = min(width, height)
    x0 = width // 5 + shift
    img[height // 2 - s // 8: height // 2 + s // 8, x0: x0 + s // 4] = (220, 30, 30)
    disc = (xx - 0.68 * width) ** 2 + (yy - 0.45 * height) ** 2 < (s // 7) ** 2
    img[disc] = (30, 60, 220)
    img[int(0.8 * height): int(0.86 * height), width // 10: width - width // 10] = (40, 170, 60)
    return img.astype(np.uint8)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expression", default="the red square on the left")
    ap.add_argument("--scene", default="", help="an image file to send (a photo); default: a generated scene")
    ap.add_argument("--model", default="", help="the node's model profile (only for the printed summary)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--node", default="/iterprime", help="fully qualified node name (topic prefix)")
    ap.add_argument("--image-topic", default="/image")
    ap.add_argument("--expression-topic", default="/referring_expression")
    ap.add_argument("--out", default="outputs/demo")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the node and the result")
    ap.add_argument("--node-pid", type=int, default=0, help="give up at once if this process (the node) exits")
    ap.add_argument("--track", type=float, default=0.0, metavar="SECONDS",
                    help="node in mode track: stream a moving scene for this long and report the per-frame results")
    ap.add_argument("--rate", type=float, default=15.0, help="--track: frames per second")
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header, String

    from .image import msg_to_numpy, numpy_to_msg

    rclpy.init()
    node = rclpy.create_node("iterprime_demo_client")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    got: dict[str, object] = {}
    cond = threading.Condition()
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    hdr = Header(frame_id="demo_camera_optical_frame")

    def keep(name):
        def cb(msg):
            if name == "result_json" or (msg.header.stamp.sec, msg.header.stamp.nanosec) == (
                    hdr.stamp.sec, hdr.stamp.nanosec):
                with cond:
                    got[name] = msg
                    cond.notify_all()
        return cb

    node.create_subscription(Image, f"{args.node}/mask", keep("mask"), reliable)
    node.create_subscription(Image, f"{args.node}/overlay", keep("overlay"), reliable)
    node.create_subscription(String, f"{args.node}/result_json", keep("result_json"), reliable)
    img_pub = node.create_publisher(Image, args.image_topic, qos_profile_sensor_data)
    # transient local ("latched"): matches both of the node's expression readers, and the node gets the
    # expression even if it (re)starts after we published
    expr_pub = node.create_publisher(String, args.expression_topic, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                            daemon=True)
    spin.start()
    code = 1
    try:
        deadline = time.monotonic() + args.timeout
        print(f"[demo] waiting for the node ({args.node}) ...", flush=True)
        while (img_pub.get_subscription_count() == 0 or expr_pub.get_subscription_count() == 0
               or node.count_subscribers(f"{args.node}/mask") == 0 and node.count_publishers(f"{args.node}/mask") == 0):
            if time.monotonic() > deadline or not _alive(args.node_pid):
                print("[demo] ERROR: the node did not come up (see its log)", file=sys.stderr)
                return 1
            time.sleep(0.1)
        if args.track > 0:
            return _track_demo(args, node, img_pub, expr_pub, deadline, numpy_to_msg, msg_to_numpy, Header, String)
        if args.scene:
            from PIL import Image as PILImage

            rgb = np.asarray(PILImage.open(args.scene).convert("RGB"))
            args.height, args.width = rgb.shape[:2]
        else:
            rgb = make_scene(args.width, args.height)
        now = node.get_clock().now().nanoseconds
        hdr.stamp.sec, hdr.stamp.nanosec = divmod(now, 1_000_000_000)
        msg = numpy_to_msg(rgb, "rgb8", header=hdr)
        for _ in range(3):  # best effort: a few copies of the same frame
            img_pub.publish(msg)
            time.sleep(0.05)
        t_sent = time.monotonic()
        expr_pub.publish(String(data=args.expression))
        print(f"[demo] sent a {args.width}x{args.height} rgb8 image and '{args.expression}'", flush=True)
        with cond:
            while not {"mask", "overlay", "result_json"} <= set(got):
                left = deadline - time.monotonic()
                if left <= 0 or not _alive(args.node_pid):
                    print(f"[demo] ERROR: no result within {args.timeout} s (got {sorted(got)})", file=sys.stderr)
                    return 1
                cond.wait(min(left, 0.2))
        rtt = time.monotonic() - t_sent
        mask = msg_to_numpy(got["mask"])
        overlay = msg_to_numpy(got["overlay"])[:, :, ::-1]  # bgr8 -> RGB
        summary = json.loads(got["result_json"].data)
        if mask.shape != (args.height, args.width):
            print(f"[demo] ERROR: mask is {mask.shape}, expected {(args.height, args.width)}", file=sys.stderr)
            return 1
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from PIL import Image as PILImage

        PILImage.fromarray(rgb).save(out / "input.png")
        PILImage.fromarray(mask).save(out / "mask.png")
        PILImage.fromarray(np.ascontiguousarray(overlay)).save(out / "overlay.png")
        (out / "result.json").write_text(json.dumps(summary, indent=2))
        c = summary.get("centroid")
        print(f"[demo] status {summary['status']!r}, mask {mask.shape[1]}x{mask.shape[0]}, area {int((mask > 0).sum())} px, "
              f"found={summary['found']}, score {summary['score']:.3f}, "
              f"centroid (u, v) = {tuple(round(x, 1) for x in c) if c else None}, "
              f"primary word {summary.get('primary_word')!r}")
        print(f"[demo] model {summary['processing_time'] * 1000:.0f} ms, stamp-to-result latency "
              f"{summary['latency'] * 1000:.0f} ms, round trip {rtt * 1000:.0f} ms")
        print(f"[demo] wrote {out}/input.png, mask.png, overlay.png, result.json")
        if args.model == "tiny-random":
            print("[demo] (tiny-random: random weights, so this mask and status are meaningless: plumbing only)")
        elif summary["found"]:
            print(f"[demo] FOUND {args.expression!r}: {int((mask > 0).sum())} px around (u, v) = "
                  f"{tuple(round(x) for x in c) if c else None}; see {out}/overlay.png")
        else:
            print(f"[demo] {args.expression!r} not found ({summary['status']}: {summary.get('message', '')}); "
                  f"the best guess is in {out}/overlay.png")
        code = 0
    finally:
        stop.set()
        spin.join(timeout=2)
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


def _track_demo(args, node, img_pub, expr_pub, deadline, numpy_to_msg, msg_to_numpy, Header, String) -> int:
    """Stream a moving scene to a node in mode track; print what came back; save the last mask/overlay."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    results, masks, overlays = [], {}, {}
    lock = threading.Lock()
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)

    def on_json(m):
        with lock:
            results.append((json.loads(m.data), time.monotonic()))

    def on_img(store):
        def cb(m):
            with lock:
                store[(m.header.stamp.sec, m.header.stamp.nanosec)] = m
        return cb

    node.create_subscription(String, f"{args.node}/result_json", on_json, reliable)
    node.create_subscription(Image, f"{args.node}/mask", on_img(masks), reliable)
    node.create_subscription(Image, f"{args.node}/overlay", on_img(overlays), reliable)
    time.sleep(0.5)  # discovery of our subscriptions
    period = 1.0 / max(args.rate, 0.1)
    start = time.monotonic()
    sent = 0
    print(f"[demo] streaming a moving {args.width}x{args.height} scene at {args.rate:g} Hz for {args.track:g} s; "
          f"expression '{args.expression}' after the first frame", flush=True)
    def tracked_so_far() -> int:
        with lock:
            return sum(1 for r, _ in results if r.get("source") == "tracking")

    # at least --track seconds; longer (up to --timeout) while nothing has been tracked yet: a grounding that
    # finds nothing (tiny-random, or a slow loaded machine) is retried by the node after lost_frames frames
    while (time.monotonic() - start < args.track
           or (tracked_so_far() == 0 and time.monotonic() < deadline)):
        if not _alive(args.node_pid):
            print("[demo] ERROR: the node exited", file=sys.stderr)
            return 1
        hdr = Header(frame_id="demo_camera_optical_frame")
        hdr.stamp.sec, hdr.stamp.nanosec = divmod(node.get_clock().now().nanoseconds, 1_000_000_000)
        shift = (TRACK_START_SHIFT + int(TRACK_SPEED_PX * sent)) % max(1, args.width // 2)
        img_pub.publish(numpy_to_msg(make_scene(args.width, args.height, shift), "rgb8", header=hdr))
        sent += 1
        if sent == 1:
            time.sleep(0.2)
            expr_pub.publish(String(data=args.expression))
        time.sleep(max(0.0, start + sent * period - time.monotonic()))
    time.sleep(2.0)
    with lock:
        got = [r for r, _ in results]
    by_source = {}
    for r in got:
        by_source[r.get("source", "?")] = by_source.get(r.get("source", "?"), 0) + 1
    tracked = [r for r in got if r.get("source") == "tracking"]
    print(f"[demo] sent {sent} frames; {len(got)} results: {by_source}; statuses "
          f"{sorted({r['status'] for r in got})}")
    if got:
        g = next((r for r in got if r.get("source") == "grounding"), None)
        if g is not None:
            print(f"[demo] grounding: {g['processing_time'] * 1000:.0f} ms, found={g['found']}, "
                  f"primary word {g.get('primary_word')!r}")
    if not tracked:
        print("[demo] ERROR: no tracked frame came back (is the node in mode track?)", file=sys.stderr)
        return 1
    med = sorted(r["processing_time"] for r in tracked)[len(tracked) // 2]
    lat = sorted(r["latency"] for r in tracked)[len(tracked) // 2]
    print(f"[demo] tracking: median {med * 1000:.0f} ms a frame (model), median stamp-to-result latency "
          f"{lat * 1000:.0f} ms, last frames since grounding {tracked[-1].get('frames_since_grounding')}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    last = tracked[-1]
    key = (last["stamp"]["sec"], last["stamp"]["nanosec"])
    from PIL import Image as PILImage

    with lock:
        m, o = masks.get(key), overlays.get(key)
    if m is not None:
        PILImage.fromarray(msg_to_numpy(m)).save(out / "track_mask.png")
    if o is not None:
        PILImage.fromarray(np.ascontiguousarray(msg_to_numpy(o)[:, :, ::-1])).save(out / "track_overlay.png")
    (out / "track_results.json").write_text(json.dumps(got, indent=1))
    print(f"[demo] wrote {out}/track_results.json" + (", track_mask.png, track_overlay.png" if m is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
