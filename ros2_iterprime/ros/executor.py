"""The node's executor: rclpy's MultiThreadedExecutor without its busy loop under sensor traffic.

Why. rclpy's ``MultiThreadedExecutor`` (Jazzy's rclpy 7.1.6 and Kilted's 9.1.2 alike) hands every ready
callback to a thread pool as a task, and ``wait_for_ready_callbacks`` yields again every task that is
neither done nor executing. A task that was handed to the pool but has not yet started (its thread is
still waiting for the GIL) is yielded again at once, handed to the pool again, and the wait returns
immediately while it is pending: the spinning thread never sleeps. Measured on this node with a 15 Hz
camera and 50 Hz /tf and nothing else: ~5000 spins per second, up to ~4000 duplicate submissions queued,
a full core busy (the same at 30 Hz; 0.0 without traffic), and the node's own callbacks starved of the
GIL, so a starved node dropped 30-70 % of its depth images and lost /tf samples while the model ran. This
is rclpy issue ros2/rclpy#1452, fixed upstream by ros2/rclpy#1547 (2025-11) in a later rclpy than the
wheels this package installs.

What. :class:`NodeExecutor` is that executor with one rule added: a task that is already waiting for a
pool thread is not submitted again; instead the spinning thread waits (at most ``requeue_wait_s``) until
some queued task has started. Callback semantics, callback groups, thread count and shutdown are rclpy's
own. Tested in tests/ros/test_executor.py (submissions and spins counted against messages, with the stock
executor as the counter-example).
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)


class NodeExecutor(MultiThreadedExecutor):
    """``MultiThreadedExecutor`` that submits each task to its thread pool at most once at a time.

    Attributes (counters, read by tests and diagnostics): ``submitted`` tasks handed to the pool,
    ``requeues_skipped`` yields of a task that was already queued (each one a spin the stock executor
    would have turned into a duplicate submission).
    """

    def __init__(self, num_threads: int | None = None, *, requeue_wait_s: float = 0.005, **kwargs) -> None:
        super().__init__(num_threads=num_threads, **kwargs)
        self.requeue_wait_s = float(requeue_wait_s)
        self._queued: dict[int, object] = {}  # id(task) -> task: handed to the pool, not yet started
        self._queued_cv = threading.Condition()
        self.submitted = 0
        self.requeues_skipped = 0

    def _run_queued(self, task) -> None:
        with self._queued_cv:
            self._queued.pop(id(task), None)
            self._queued_cv.notify_all()
        task()

    def _spin_once_impl(self, timeout_sec=None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return  # as rclpy: the caller's loop decides whether to go on
        with self._queued_cv:
            if id(handler) in self._queued:
                # yielded again while still waiting for a pool thread: do not queue it twice; let a
                # pool thread start (it needs the GIL this loop would otherwise keep)
                self.requeues_skipped += 1
                self._queued_cv.wait(self.requeue_wait_s)
                return
            self._queued[id(handler)] = handler
        self.submitted += 1
        self._executor.submit(self._run_queued, handler)
        self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exception of a callback (the node's spin loop logs it)
