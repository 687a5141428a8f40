"""Entry point of the `iterprime_node` executable: imports the node only inside ``main``.

rclpy, torch and transformers take seconds to import; a Ctrl-C during that time must end the process
quietly (exit 130), not with a KeyboardInterrupt traceback from the middle of an import.
"""
import sys


def main() -> int:
    try:
        from .node import main as node_main
    except KeyboardInterrupt:
        return 130
    return node_main()


if __name__ == "__main__":
    sys.exit(main())
