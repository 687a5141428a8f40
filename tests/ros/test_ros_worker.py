"""The node's scheduling rules and input ordering, without DDS (ros2_iterprime.ros.worker / inputs)."""
from __future__ import annotations

import random
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from ros2_iterprime.ros.inputs import DepthFrame, DepthSync, ExpressionInbox, Frame
from ros2_iterprime.ros.worker import FRAME_TOO_OLD, NO_FRAME, Scheduler, Worker

S = 1_000_000_000


class Clock:
    """Both clocks of the scheduler, driven by the test: ROS time (ns) and monotonic (s)."""

    def __init__(self):
        self.t = 100.0

    def ns(self):
        return int(self.t * S)

    def mono(self):
        return self.t


def header(stamp_s: float):
    sec = int(stamp_s)
    return SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int(round((stamp_s - sec) * 1e9))), frame_id="cam")


def make(mode="on_command", rate=0.0, max_age=2.0):
    clock = Clock()
    settings = {"mode": mode, "max_rate_hz": rate, "track_rate_hz": 0.0, "max_frame_age": max_age}
    sch = Scheduler(settings.__getitem__, clock.ns, clock.mono)
    return sch, clock, settings


RGB = np.zeros((4, 4, 3), np.uint8)


def put(sch, clock, age=0.0):
    stamp = clock.t - age
    return sch.put_frame(header(stamp), RGB, int(stamp * S))


def test_expression_is_answered_once_on_the_newest_fresh_frame():
    sch, clock, _ = make()
    put(sch, clock)
    put(sch, clock)
    sch.put_expression("the cup")
    job = sch.next_job(0)
    assert job.frame.seq == 2 and job.expression == "the cup" and job.trigger == "expression" and job.failure is None
    sch.done(job)
    put(sch, clock)
    assert sch.next_job(0) is None, "on_command answers an expression once"


def test_expression_waits_for_a_fresh_frame_then_uses_it():
    sch, clock, _ = make(max_age=2.0)
    put(sch, clock, age=5.0)  # too old
    sch.put_expression("the cup")
    assert sch.next_job(0) is None  # waiting, not answered on the stale frame
    clock.t += 1.0
    put(sch, clock, age=0.1)
    job = sch.next_job(0)
    assert job.failure is None and job.frame.seq == 2


def test_stale_frame_gives_a_frame_too_old_answer_after_the_wait():
    sch, clock, _ = make(max_age=2.0)
    put(sch, clock, age=60.0)
    sch.put_expression("the cup")
    assert sch.next_job(0) is None
    clock.t += 2.0
    job = sch.next_job(0)
    assert job.frame is None and job.failure[0] == FRAME_TOO_OLD and "62.0 s old" in job.failure[1]


def test_no_frame_at_all_gives_a_no_frame_answer():
    sch, clock, _ = make(max_age=1.5)
    sch.put_expression("the cup")
    clock.t += 1.5
    job = sch.next_job(0)
    assert job.failure[0] == NO_FRAME and job.expression == "the cup"


def test_max_frame_age_zero_disables_the_limit():
    sch, clock, _ = make(max_age=0.0)
    put(sch, clock, age=3600.0)
    sch.put_expression("x")
    assert sch.next_job(0).failure is None


def test_unstamped_frames_age_from_their_arrival():
    sch, clock, _ = make(max_age=2.0)
    sch.put_frame(header(0.0), RGB, 0)
    sch.put_expression("x")
    assert sch.next_job(0).failure is None
    f = sch.frame
    assert f.age_s(clock.ns() + 3 * S) == pytest.approx(3.0)
    assert Frame(header(0), RGB, int(clock.t * S + 5 * S), 1).age_s(clock.ns()) == 0.0  # future stamps: skew


def test_continuous_mode_rate_cap_and_drop_accounting():
    sch, clock, _ = make(mode="continuous", rate=2.0, max_age=0.0)
    sch.put_expression("cup")
    put(sch, clock)
    job = sch.next_job(0)  # the expression's own job
    assert job.trigger == "expression"
    # while busy and within the rate cap window: replaced frames are rate-limited, not dropped
    clock.t += 0.1
    put(sch, clock)
    assert put(sch, clock) == "rate_limited"
    # busy past the cap window: the model is the bottleneck -> dropped
    clock.t += 0.5
    assert put(sch, clock) == "dropped"
    sch.done(job)
    job2 = sch.next_job(0)
    assert job2.trigger == "stream" and job2.frame.seq == 4
    sch.done(job2)
    # idle but waiting for the cap: the next frame is held back, then taken
    put(sch, clock)
    assert sch.next_job(0) is None
    clock.t += 0.5
    assert sch.next_job(0).frame.seq == 5
    assert sch.counts["dropped"] == 1 and sch.counts["rate_limited"] == 1


def test_continuous_mode_skips_stale_frames():
    sch, clock, _ = make(mode="continuous", rate=0.0, max_age=1.0)
    sch.put_expression("cup")
    put(sch, clock)
    sch.done(sch.next_job(0))
    put(sch, clock, age=10.0)
    assert sch.next_job(0) is None and sch.counts["stale"] == 1


def test_new_expression_supersedes_running_job_and_empty_clears():
    sch, clock, settings = make()
    put(sch, clock)
    sch.put_expression("a")
    job = sch.next_job(0)
    sch.put_expression("b")
    assert not sch.is_current(job)
    sch.done(job)
    assert sch.next_job(0).expression == "b"
    sch.put_expression(None)
    assert sch.active_expression is None and sch.next_job(0) is None


def test_worker_survives_exceptions_and_stops():
    sch, clock, _ = make(max_age=0.0)
    seen, errors = [], []
    done = threading.Event()

    def run(job):
        seen.append(job.expression)
        if job.expression == "boom":
            raise RuntimeError("boom")
        done.set()

    w = Worker(sch, run, errors.append)
    w.start()
    put(sch, clock)
    sch.put_expression("boom")
    for _ in range(200):
        if errors:
            break
        threading.Event().wait(0.01)
    put(sch, clock)
    sch.put_expression("ok")
    assert done.wait(5)
    assert w.stop(5)
    assert seen == ["boom", "ok"] and isinstance(errors[0], RuntimeError)


# ------------------------------------------------------------------------------ expression ordering
def info(gid: int, seq: int, src_ns: int):
    return {"publisher_gid": {"implementation_identifier": "rmw_fastrtps_cpp", "data": [gid] * 16},
            "publication_sequence_number": seq, "source_timestamp": src_ns, "received_timestamp": 0}


def test_latched_burst_newest_wins_whatever_the_delivery_order():
    """500 samples from one latched publisher through two readers, delivered out of order."""
    inbox = ExpressionInbox()
    samples = [(i, info(7, i, 1_000 + i)) for i in range(1, 501)]
    # the transient-local reader delivers #499 (latest at its creation) and #500; the volatile reader's
    # backlog (#1..#500, depth-limited to the last 10) arrives interleaved and late
    order = [(s, True) for s in samples[498:500]] + [(s, False) for s in samples[490:500]]
    active = None
    for (i, inf), latched in order:
        if inbox.accept(inf, latched):
            active = i
    assert active == 500


def test_duplicates_through_two_readers_are_dropped():
    inbox = ExpressionInbox()
    assert inbox.accept(info(1, 1, 10))
    assert not inbox.accept(info(1, 1, 10))


def test_an_old_latched_sample_from_another_publisher_does_not_win():
    inbox = ExpressionInbox()
    assert inbox.accept(info(1, 5, 2_000))
    assert not inbox.accept(info(2, 1, 1_000), latched=True), "an older latched sample delivered late must not win"
    assert inbox.accept(info(2, 2, 3_000), latched=True)


def test_live_samples_of_a_publisher_with_a_slower_clock_are_never_ignored():
    """Publisher B's clock runs 5 s behind A's (another machine): its newer live expressions still win."""
    inbox = ExpressionInbox()
    assert inbox.accept(info(1, 1, 10_000_000_000))
    for seq in range(1, 5):
        assert inbox.accept(info(2, seq, 5_000_000_000 + seq)), seq


def test_samples_without_metadata_are_accepted_in_order():
    inbox = ExpressionInbox()
    assert inbox.accept(None) and inbox.accept({})


def test_random_interleavings_always_end_on_the_newest():
    rng = random.Random(0)
    for _ in range(50):
        inbox = ExpressionInbox()
        sent = [info(3, i, 100 + i) for i in range(1, 40)]
        deliveries = sent + rng.sample(sent, 20)
        rng.shuffle(deliveries)
        deliveries.append(sent[-1])
        active = None
        for d in deliveries:
            if inbox.accept(d, latched=rng.random() < 0.5):
                active = d["publication_sequence_number"]
        assert active == 39


def test_depth_sync_matches_by_stamp_within_slop():
    sync = DepthSync()
    intr = SimpleNamespace(name="K")
    for t in (1.00, 1.10, 1.20):
        sync.add_depth(DepthFrame(header(t), np.zeros((2, 2), np.float32), int(t * S)))
        sync.add_info(int(t * S), intr)
    d, k = sync.match(int(1.11 * S), 0.02)
    assert d.stamp_ns == int(1.10 * S) and k is intr
    assert sync.match(int(1.5 * S), 0.05) == (None, None)


def test_same_sample_without_sequence_numbers_is_a_duplicate():
    """rmw_fastrtps leaves publication_sequence_number unset: (publisher, source time) identifies a sample."""
    inbox = ExpressionInbox()
    a = {"publisher_gid": {"data": [9] * 16}, "publication_sequence_number": None, "source_timestamp": 500}
    assert inbox.accept(a)
    assert not inbox.accept(dict(a))
    assert inbox.accept(dict(a, source_timestamp=600))


def test_cause_throttle_logs_each_cause_and_counts_the_suppressed():
    from ros2_iterprime.ros.log import CauseThrottle, quote

    lines = []
    logger = SimpleNamespace(warning=lambda m: lines.append(("W", m)), error=lambda m: lines.append(("E", m)))
    t = [0.0]
    th = CauseThrottle(logger, 5.0, clock=lambda: t[0])
    assert th.warning("image", "bad image")
    assert th.warning("depth", "bad depth"), "another cause is not hidden by the first"
    assert not th.warning("image", "bad image")
    assert th.error("worker", "boom")
    t[0] = 6.0
    assert th.warning("image", "bad image")
    assert lines == [("W", "bad image"), ("W", "bad depth"), ("E", "boom"),
                     ("W", "bad image (1 more like this in the last 5 s)")]
    assert quote("a\n[FATAL] x") == '"a\\n[FATAL] x"' and "\n" not in quote("x\n\r\x00" * 50)
    assert quote("é" * 100, 10).endswith('"...')


def test_a_stopped_worker_is_never_revived_by_the_next_one():
    """Deactivate during a long job, then activate: exactly one worker takes jobs afterwards."""
    sch, clock, _ = make(max_age=0.0)
    release = threading.Event()
    ran = []

    def slow(job):
        ran.append((threading.current_thread().ident, job.expression))
        if job.expression == "long":
            release.wait(5)

    old = Worker(sch, slow, lambda e: None)
    old.start()
    put(sch, clock)
    sch.put_expression("long")
    for _ in range(200):
        if ran:
            break
        threading.Event().wait(0.01)
    assert not old.stop(timeout=0.05), "still inside its job"
    new = Worker(sch, slow, lambda e: None)
    new.start()
    release.set()
    assert old.stop(timeout=5), "the old worker ends after its job"
    put(sch, clock)
    sch.put_expression("after")
    for _ in range(300):
        if len(ran) == 2:
            break
        threading.Event().wait(0.01)
    assert new.stop(timeout=5)
    assert [e for _, e in ran] == ["long", "after"] and ran[0][0] != ran[1][0]


def test_a_rate_changed_to_zero_between_reads_does_not_kill_scheduling():
    clock = Clock()
    rates = iter([2.0, 0.0] * 50)
    settings = {"mode": "continuous", "max_frame_age": 0.0}
    sch = Scheduler(lambda k: next(rates) if k == "max_rate_hz" else settings[k], clock.ns, clock.mono)
    sch.put_expression("cup")
    put(sch, clock)
    sch.done(sch.next_job(0))
    put(sch, clock)
    for _ in range(10):  # whichever value each read sees, no ZeroDivisionError
        job = sch.next_job(0)
        if job is not None:
            sch.done(job)
            put(sch, clock)


# ---- issue 14: depth paired after segmentation, the exact stamp waited for, newest on ties


def _depth(t, frame="cam", received=None):
    return DepthFrame(SimpleNamespace(frame_id=frame, stamp=None), np.zeros((2, 2), np.float32), int(t * S),
                      int((received if received is not None else t) * S))


def test_depth_arriving_after_its_colour_frame_is_the_one_paired():
    """Host-aligned depth (aligned_depth_to_color) comes 5-40 ms after its colour frame: the previous
    frame's depth (33 ms older, inside the 50 ms slop) must not win."""
    sync = DepthSync()
    sync.add_info(int(0.967 * S), "K0")
    sync.add_depth(_depth(0.967))  # the previous colour frame's depth
    claim = sync.claim(int(1.0 * S), 0, 0.05)  # the job starts on the colour frame of t = 1.0
    import threading
    threading.Timer(0.02, lambda: (sync.add_info(int(1.0 * S), "K1"), sync.add_depth(_depth(1.0)))).start()
    d, k = claim.get()  # after the model: waits (at most sync_slop) for the exact stamp
    claim.release()
    assert d.stamp_ns == int(1.0 * S) and k == "K1"


def test_the_wait_ends_early_when_a_later_depth_is_there_and_is_bounded():
    import time as _t
    sync = DepthSync()
    sync.add_depth(_depth(0.98))
    sync.add_depth(_depth(1.03))  # 15 Hz depth: no exact match; a later one already arrived
    t0 = _t.monotonic()
    d, _ = sync.match(int(1.0 * S), 0.05, wait_s=5.0)
    assert _t.monotonic() - t0 < 1.0 and d.stamp_ns == int(0.98 * S)
    t0 = _t.monotonic()
    sync2 = DepthSync()
    sync2.add_depth(_depth(0.97))
    d, _ = sync2.match(int(1.0 * S), 0.05, wait_s=0.2)  # nothing later comes: bounded wait
    assert 0.15 < _t.monotonic() - t0 < 2.0 and d.stamp_ns == int(0.97 * S)


def test_newest_on_ties_and_unstamped_streams_pair_by_arrival():
    sync = DepthSync()
    sync.add_depth(_depth(0.99))
    sync.add_depth(_depth(1.01))
    assert sync.match(int(1.0 * S), 0.05)[0].stamp_ns == int(1.01 * S)  # equally close: the newer
    un = DepthSync()  # unstamped: every stamp is 0; pair by arrival, not the oldest of the buffer
    for r in (0.90, 0.933, 0.967, 1.010):
        un.add_depth(_depth(0.0, received=r))
    d, _ = un.match(0, 0.05, received_ns=int(1.0 * S))
    assert d.received_ns == int(1.010 * S)


def test_a_claim_keeps_its_depth_through_a_long_model_run():
    """At 30 Hz the shared buffer keeps 0.5 s; a claim keeps the frame's candidates for as long as the model runs."""
    sync = DepthSync(keep=15)
    claim = sync.claim(int(1.0 * S), 0, 0.05)
    sync.add_depth(_depth(1.0))
    for i in range(1, 300):  # 10 s of depth at 30 Hz while the model runs
        sync.add_depth(_depth(1.0 + i / 30))
    d, _ = claim.get()
    claim.release()
    assert d.stamp_ns == int(1.0 * S)
    assert len(claim.depths) <= 8


def test_a_missing_depth_says_whether_it_was_late_or_absent():
    """No depth in the window: the reason tells a late depth stream (its own had not arrived when the model
    finished: a starved node, a slow driver) from a stream without one that close (15 Hz depth, or one lost
    on the way), with the closest one received (its own, had it been received, would be 0 s away)."""
    sync = DepthSync()
    claim = sync.claim(int(1.0 * S), 0, 0.02, wait_s=0.0)
    assert claim.get() == (None, None)
    assert claim.missing_reason().endswith("no depth image received yet")
    sync.add_depth(_depth(0.95))
    claim = sync.claim(int(1.0 * S), 0, 0.02, wait_s=0.0)
    assert claim.get()[0] is None
    why = claim.missing_reason()
    assert "sync_slop (0.02 s)" in why and "had arrived" in why and "0.050 s older" in why and "late" in why
    sync.add_depth(_depth(1.0667))  # 15 Hz: the next depth image is 67 ms after this colour frame
    claim = sync.claim(int(1.0 * S), 0, 0.02, wait_s=0.0)
    assert claim.get()[0] is None
    why = claim.missing_reason()
    assert "none that close" in why and "closest is -0.050 s" in why and "late" not in why
    sync.add_depth(_depth(1.0))  # its own depth, arriving late: the claim (still open) gets it
    assert claim.get()[0].stamp_ns == int(1.0 * S)
    claim.release()


def test_track_mode_has_its_own_rate_cap():
    sch, clock, settings = make("track", rate=2.0)
    sch.put_expression("cup")
    put(sch, clock)
    sch.done(sch.next_job(0))
    for _ in range(5):  # max_rate_hz 2 does not cap track mode: every new frame is taken at once
        clock.t += 0.033
        put(sch, clock)
        job = sch.next_job(0)
        assert job is not None
        sch.done(job)
    settings["track_rate_hz"] = 10.0
    clock.t += 0.033
    put(sch, clock)
    assert sch.next_job(0) is None  # 33 ms after the last start: 10 Hz cap holds it back
