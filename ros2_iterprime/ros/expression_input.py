"""The ``referring_expression`` input: volatile and latched publishers, newest sample wins.

A volatile reader matches every publisher but never receives a latched (transient-local) publisher's
earlier sample; a transient-local reader does, but is incompatible with volatile writers (every
``ros2 topic pub`` would warn about it). So the second reader exists only while the graph shows a
transient-local writer on the topic (checked by a timer); the :class:`~.inputs.ExpressionInbox` keeps
the newest sample whichever reader delivers it. Accepted text is cut to ``MAX_EXPRESSION_CHARS``,
whitespace-normalised and handed to the scheduler; an empty expression clears the target.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from .diagnostics import NodeStats
from .inputs import ExpressionInbox
from .log import CauseThrottle, quote
from .worker import Scheduler

__all__ = ["MAX_EXPRESSION_CHARS", "ExpressionInput", "clean_text"]

#: Longer expressions are cut here before parsing (the text model keeps far fewer tokens anyway).
MAX_EXPRESSION_CHARS = 1000
TOPIC = "referring_expression"


def clean_text(text: Any) -> str:
    """A message's text cut to MAX_EXPRESSION_CHARS and whitespace-normalised ('' for a non-string)."""
    text = text if isinstance(text, str) else ""
    return " ".join(text[:MAX_EXPRESSION_CHARS].split())


class ExpressionInput:
    """Owns the expression readers of an active node.

    Args:
        node: the rclpy node.
        scheduler: gets ``put_expression(text or None)``.
        stats, log: counters and throttled logger.
        on_cleared: called when an empty expression clears the target (the node clears its markers).
    """

    def __init__(self, node: Any, scheduler: Scheduler, stats: NodeStats, log: CauseThrottle,
                 on_cleared: Callable[[], None]):
        self.node, self.scheduler, self.stats, self.log = node, scheduler, stats, log
        self.on_cleared = on_cleared
        self.inbox = ExpressionInbox()
        self._group = None
        self._sub = None
        self._latched_sub = None
        self._timer = None

    def subscribe(self, group) -> None:
        """Create the volatile reader and the graph check (activation)."""
        self._group = group
        self._sub = self.node.create_subscription(
            String, TOPIC, self._on_expression, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
            callback_group=group)
        self._timer = self.node.create_timer(0.5, self.sync_latched_reader, callback_group=group)

    def unsubscribe(self) -> None:
        """Destroy the readers and timer; after re-activation a latched expression is served again."""
        node = self.node
        if self._timer is not None:
            node.destroy_timer(self._timer)
        for sub in (self._sub, self._latched_sub):
            if sub is not None:
                node.destroy_subscription(sub)
        self._sub = self._latched_sub = self._timer = None
        self.inbox = ExpressionInbox()

    def sync_latched_reader(self) -> None:
        """Keep a transient-local reader only while a transient-local publisher exists (module docstring)."""
        try:
            node = self.node
            topic = node.resolve_topic_name(TOPIC)
            latched = any(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                          for i in node.get_publishers_info_by_topic(topic))
            if latched and self._latched_sub is None and self._sub is not None:
                qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
                # volatile writers (`ros2 topic pub`) cannot match this reader by design: not worth a warning
                self._latched_sub = node.create_subscription(
                    String, TOPIC, self._on_latched_expression, qos, callback_group=self._group,
                    event_callbacks=SubscriptionEventCallbacks(incompatible_qos=lambda event: None))
            elif not latched and self._latched_sub is not None:
                node.destroy_subscription(self._latched_sub)
                self._latched_sub = None
        except Exception as exc:  # graph queries can fail during shutdown
            self.log.warning("graph", f"expression reader update failed: {type(exc).__name__}: {exc}")

    # two parameters without defaults: rclpy then passes the MessageInfo (publisher, sequence, time)
    def _on_expression(self, msg: String, info) -> None:
        self.received(msg, info, latched=False)

    def _on_latched_expression(self, msg: String, info) -> None:
        self.received(msg, info, latched=True)

    def received(self, msg: String, info, latched: bool) -> None:
        if not self.inbox.accept(info, latched):
            self.stats.count("expressions_ignored")
            return
        raw = msg.data if isinstance(msg.data, str) else ""
        if len(raw) > MAX_EXPRESSION_CHARS:
            self.log.warning("long_expression", f"expression of {len(raw)} characters cut to {MAX_EXPRESSION_CHARS}")
        text = clean_text(raw)
        self.stats.count("expressions")
        self.scheduler.put_expression(text or None)
        if not text:
            self.node.get_logger().warning("empty expression: cleared the active expression (no target)")
            self.on_cleared()
        else:
            self.node.get_logger().info(f"new expression {quote(text, 120)}")
