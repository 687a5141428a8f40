"""Entry point of the `iterprime_node` executable: start the node, spin it, shut it down cleanly.

rclpy, torch and transformers take seconds to import; a Ctrl-C during that time must end the process
quietly (exit 130), not with a KeyboardInterrupt traceback from the middle of an import, so every ROS
import happens inside ``main``. A KeyboardInterrupt raised *inside* an import leaves a half-initialised
extension module (rclpy's pybind11 module, torch) whose destructors can crash the interpreter at exit
(SIGSEGV), so :class:`_QuietInterrupt` never raises while an import runs: it records the Ctrl-C and the
start-up stops at the next check point (exit 130). Outside imports (e.g. reading weights) it raises as
usual. After shutdown, exceptions left in the executor's finished callbacks (entities destroyed under
them) are collected, so rclpy does not print "exception was never retrieved" at exit.

Exit codes: 0 after Ctrl-C once running or a lifecycle shutdown, 1 when the node cannot start (invalid
parameters, a model that cannot be loaded: one FATAL line says why), 130 for Ctrl-C during start-up
(imports, configure, activate).
"""
import signal
import sys


class _QuietInterrupt:
    """SIGINT handler for start-up: records the Ctrl-C; raises KeyboardInterrupt only outside imports."""

    def __init__(self):
        self.fired = False
        self._previous = None

    def install(self) -> None:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (embedded use): leave Python's default
            self._previous = None

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        self.fired = True
        f = frame
        while f is not None:  # inside an import (importlib's bootstrap on the stack): never raise there
            if "importlib._bootstrap" in f.f_code.co_filename:
                return
            f = f.f_back
        raise KeyboardInterrupt


def _collect_task_exceptions(executor) -> None:
    """Mark the exceptions of finished callback tasks as retrieved (they are shutdown noise)."""
    for fut in list(getattr(executor, "_futures", []) or []):
        try:
            if fut.done():
                fut.exception()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _log_fatal(msg: str) -> None:
    import rclpy

    rclpy.logging.get_logger("iterprime").fatal(msg)


def main(args=None) -> int:
    quiet = _QuietInterrupt()
    quiet.install()
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException

        from .executor import NodeExecutor
        from .log import quote
        from .node import SUCCESS, IterPrimeNode
        from .parameters import StartupError
    except KeyboardInterrupt:
        quiet.restore()
        return 130
    if quiet.fired:
        quiet.restore()
        return 130
    # rclpy handles SIGTERM only: a SIGINT handled by rclpy shuts the context down at once, so a Ctrl-C
    # while the node is being built or configured made every later rcl call fail with tracebacks
    # ("context is invalid"); with _QuietInterrupt the start-up stops cleanly and exits 130
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.SIGTERM)
    except ImportError:  # pragma: no cover - rclpy without signal options
        rclpy.init(args=args)
    node = executor = None
    try:
        try:
            node = IterPrimeNode()
        except StartupError as exc:
            _log_fatal(f"cannot start: {exc}")
            return 1
        except Exception:
            if quiet.fired or not rclpy.ok():
                return 130  # Ctrl-C / SIGTERM while the node was being built
            raise
        if quiet.fired:
            return 130
        executor = NodeExecutor(num_threads=4)  # rclpy's, without its busy loop (ros2/rclpy#1452)
        executor.add_node(node)
        if node.setting("autostart"):
            node.autostarting = True
            try:
                configured = node.trigger_configure() == SUCCESS and not quiet.fired
            except KeyboardInterrupt:
                return 130
            if quiet.fired or not rclpy.ok():
                return 130
            if not configured:
                _log_fatal(node.configure_error or "configure failed")
                return 1
            node.autostarting = False
            if node.trigger_activate() != SUCCESS:
                if quiet.fired or not rclpy.ok():
                    return 130
                _log_fatal("activate failed")
                return 1
        else:
            node.get_logger().info("ready: unconfigured (autostart:=false); waiting for lifecycle transitions")
        while rclpy.ok() and not node.finalized:
            try:
                executor.spin_once(timeout_sec=0.5)
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception as exc:  # a failing callback (e.g. a malformed parameter request) never ends the node
                node.stats.error(f"{type(exc).__name__}: {exc}")
                node.log.error("callback", f"a callback failed and was skipped: {type(exc).__name__}: "
                                           f"{quote(str(exc), 300)}")
    except KeyboardInterrupt:
        if node is None or node.lifecycle_state != "active":
            return 130  # Ctrl-C during start-up
    finally:
        quiet.restore()
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)  # no callback may run on a destroyed node
            _collect_task_exceptions(executor)
        if node is not None:
            node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
