"""scripts/rewrite_cmake_paths.py: the ROS 2 wheels' CMake exports pointed at this venv's headers.

The exported file is the real one from this venv (std_msgs' rosidl_generator_py export, already
rewritten by setup), turned back into the form the wheel ships (the manylinux container's paths), so
the patterns are checked on the file the build really reads, for whichever distribution the venv holds.
"""
from __future__ import annotations

import importlib.util
import sys
import sysconfig
from pathlib import Path

import numpy
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("rewrite_cmake_paths", ROOT / "scripts" / "rewrite_cmake_paths.py")
rcp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rcp)

EXPORT = Path(sys.prefix) / "share" / "std_msgs" / "cmake" / "export_std_msgs__rosidl_generator_pyExport.cmake"
CONTAINER_PY = "/opt/python/cp311-cp311/include/python3.11"
CONTAINER_NP = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


@pytest.fixture
def shipped(tmp_path) -> Path:
    if not EXPORT.is_file():
        pytest.skip("not a pip venv with the ROS 2 wheels (a real install needs no rewrite)")
    text = EXPORT.read_text()
    py_inc, np_inc = sysconfig.get_paths()["include"], numpy.get_include()
    assert py_inc in text and np_inc in text, "setup left this export pointing elsewhere"
    out = tmp_path / "share" / "std_msgs" / "cmake" / EXPORT.name
    out.parent.mkdir(parents=True)
    out.write_text(text.replace(np_inc, CONTAINER_NP).replace(py_inc, CONTAINER_PY))
    return tmp_path


def test_both_container_paths_are_rewritten(shipped):
    n, left = rcp.rewrite(shipped, "/venv/include/python3.11", "/venv/numpy/include")
    assert (n, left) == (1, [])
    text = next(shipped.rglob("*.cmake")).read_text()
    assert '"/venv/include/python3.11;/venv/numpy/include"' in text and "/opt/python" not in text
    assert rcp.rewrite(shipped, "/x", "/y") == (0, [])  # idempotent: nothing left to rewrite


def test_numpy_1_layout_is_rewritten_too(tmp_path):
    f = tmp_path / "share" / "p" / "cmake" / "a.cmake"
    f.parent.mkdir(parents=True)
    f.write_text('"/opt/python/cp312-cp312/include/python3.12;/opt/python/cp312-cp312/lib/python3.12/'
                 'site-packages/numpy/core/include"')
    assert rcp.rewrite(tmp_path, "/py", "/np") == (1, [])
    assert f.read_text() == '"/py;/np"'


def test_an_unknown_container_path_stops_the_build_naming_the_file(shipped, capsys):
    f = next(shipped.rglob("*.cmake"))
    f.write_text(f.read_text() + '\nset(X "/opt/python/cp311-cp311/lib/libpython3.11.so")\n')
    assert rcp.main([str(shipped)]) == 1
    err = capsys.readouterr().err
    assert str(f) in err and "/opt/python/cp311-cp311/lib/libpython3.11.so" in err
