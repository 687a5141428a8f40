"""Exceptions raised by the library. Callers (CLI, ROS node) catch these and keep running."""


class IterPrimeError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(IterPrimeError, ValueError):
    """An image or expression that cannot be processed (empty text, 0x0 image, bad dtype, ...)."""


class ModelNotFoundError(IterPrimeError, FileNotFoundError):
    """Model weights are not available locally (no network, not in the cache, bad path)."""


class NoImageError(IterPrimeError, RuntimeError):
    """`segment()` was called before `set_image()`."""


class UnsafeCheckpointError(ModelNotFoundError):
    """A checkpoint that could only be read by full unpickling (running code from the file) was refused."""
