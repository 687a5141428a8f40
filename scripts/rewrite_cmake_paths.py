#!/usr/bin/env python3
"""Point the ROS 2 wheels' exported CMake files at this venv's Python and numpy headers.

    python scripts/rewrite_cmake_paths.py VENV     (called by scripts/build_interfaces.sh)

The ros-jazzy-* and ros-kilted-* wheels were built in a manylinux container, and their
`share/<pkg>/cmake/*.cmake` exports (the rosidl_generator_py ones: 14 files in either distribution)
name that container's include directories: /opt/python/cp3XX-cp3XX/include/python3.XX and
.../site-packages/numpy/_core/include (numpy/core/include before numpy 2). Both patterns are rewritten
to the running interpreter's own. Any other /opt/python/ path left in a CMake file stops the build,
naming the file: a new wheel layout is to be looked at, not half-built against. (The ament index's
`parent_prefix_path` entries also name /opt/python/...; they are not CMake files and do no harm.)
"""
from __future__ import annotations

import pathlib
import re
import sys
import sysconfig

PAT_NUMPY = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_?core/include")
PAT_PYTHON = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")


def rewrite(prefix: pathlib.Path, py_include: str, numpy_include: str) -> tuple[int, list[str]]:
    """(files rewritten, ['file: the unknown path left', ...]) for every *.cmake under prefix/share."""
    n, left = 0, []
    for f in sorted((prefix / "share").rglob("*.cmake")):
        try:
            text = f.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if "/opt/python/" not in text:
            continue
        new = PAT_PYTHON.sub(py_include, PAT_NUMPY.sub(numpy_include, text))
        if new != text:
            f.write_text(new)
            n += 1
        if "/opt/python/" in new:
            left.append(f"{f}: {new[new.index('/opt/python/'):][:120].splitlines()[0]}")
    return n, left


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import numpy

    n, left = rewrite(pathlib.Path(argv[0]), sysconfig.get_paths()["include"], numpy.get_include())
    print(f"[interfaces] rewrote {n} CMake file(s)")
    if left:
        print("[interfaces] ERROR: build-container paths this script does not know are left in:\n  "
              + "\n  ".join(left), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
