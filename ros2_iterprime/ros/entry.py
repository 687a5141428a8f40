"""Entry point of the `iterprime_node` executable: start the node, spin it, shut it down cleanly.

rclpy, torch and transformers take seconds to import; a Ctrl-C during that time must end the process
quietly (exit 130), not with a KeyboardInterrupt traceback from the middle of an import, so every ROS
import happens inside ``main``.

Exit codes: 0 after Ctrl-C or a lifecycle shutdown, 1 when the node cannot start (invalid parameters,
a model that cannot be loaded: one FATAL line says why), 130 for Ctrl-C during start-up imports.
"""
import sys


def _log_fatal(msg: str) -> None:
    import rclpy

    rclpy.logging.get_logger("iterprime").fatal(msg)


def main(args=None) -> int:
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

        from .log import quote
        from .node import SUCCESS, IterPrimeNode
        from .parameters import StartupError
    except KeyboardInterrupt:
        return 130
    rclpy.init(args=args)
    node = executor = None
    try:
        try:
            node = IterPrimeNode()
        except StartupError as exc:
            _log_fatal(f"cannot start: {exc}")
            return 1
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        if node.setting("autostart"):
            node.autostarting = True
            if node.trigger_configure() != SUCCESS:
                _log_fatal(node.configure_error or "configure failed")
                return 1
            node.autostarting = False
            if node.trigger_activate() != SUCCESS:
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
        pass
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)  # no callback may run on a destroyed node
        if node is not None:
            node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
