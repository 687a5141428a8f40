"""The package layout is the architecture: imports point one way (docs/ARCHITECTURE.md), with no circle.

Reads every module's imports with `ast` (module level and inside functions, relative and absolute) and
fails on an arrow against the order

    ros, cli  ->  replay  ->  evaluation, benchmark  ->  tracking  ->  grounding  ->  models  ->  helpers
    ros, replay  ->  messages  ->  geometry  ---------------------------------------->  helpers

(an arrow may skip levels downwards; `cli` may not import `ros`, which has its own executable), on any
import cycle between modules, and on ROS imports outside `ros/`.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = "ros2_iterprime"
ROOT = Path(__file__).resolve().parents[1] / PKG

#: folder -> the folders it may import (besides itself). "helpers" = the modules at the package root.
ALLOWED = {
    "helpers": set(),
    "models": {"helpers"},
    "geometry": {"helpers"},
    "grounding": {"models", "helpers"},
    "tracking": {"grounding", "models", "helpers"},
    "messages": {"geometry", "helpers"},
    "evaluation": {"helpers"},
    "benchmark": {"tracking", "grounding", "geometry", "models", "helpers"},
    "replay": {"messages", "tracking", "grounding", "geometry", "models", "helpers"},
    "ros": {"messages", "tracking", "grounding", "geometry", "models", "helpers"},
    "cli": {"replay", "messages", "evaluation", "benchmark", "tracking", "grounding", "geometry", "models", "helpers"},
}
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs",
                "diagnostic_msgs", "lifecycle_msgs", "builtin_interfaces", "tf2_ros", "tf2_msgs", "ros2_iterprime_msgs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def folder_of(module: str) -> str:
    """'ros2_iterprime.ros.node' -> 'ros'; root modules (errors, results, ...) -> 'helpers'."""
    parts = module.split(".")
    if len(parts) >= 2 and (ROOT / parts[1]).is_dir():
        return parts[1]
    return "helpers"


def imports_of(module: str) -> list[tuple[str, int]]:
    """[(imported module, line)] for every import statement in ``module``, resolved to known modules."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import outputs` imports a module
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in MODULES else target, node.lineno))
    return found


def own_imports(module: str) -> list[tuple[str, int]]:
    return [(m, line) for m, line in imports_of(module) if m == PKG or m.startswith(PKG + ".")]


def test_every_folder_has_a_rule_and_a_docstring():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(ALLOWED) - {"helpers"}
    for name in folders:
        doc = ast.get_docstring(ast.parse((ROOT / name / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 30, f"{name}/__init__.py needs a paragraph saying what it owns"


def test_imports_point_down():
    wrong = []
    for module in MODULES:
        if module == PKG:  # the public facade re-exports lazily from every folder
            continue
        src = folder_of(module)
        for target, line in own_imports(module):
            if target == PKG:  # `from .. import __version__`: the facade's eager part is helpers only
                continue
            dst = folder_of(target)
            if dst != src and dst not in ALLOWED[src]:
                wrong.append(f"{MODULES[module].relative_to(ROOT.parent)}:{line}: {src} -> {dst} ({target})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = {m: {t for t, _ in own_imports(m) if t in MODULES and t != m} for m in MODULES}
    # a package's __init__ is imported with each of its modules: edges into __init__ only matter when it imports back
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_ros_is_imported_only_by_the_ros_adapter():
    wrong = [f"{module}:{line}: {name}" for module in MODULES if folder_of(module) != "ros"
             for name, line in imports_of(module) if name.split(".")[0] in ROS_PACKAGES]
    assert not wrong, wrong


@pytest.mark.parametrize("rule", [("grounding", "tracking"), ("models", "grounding"), ("geometry", "models"),
                                  ("tracking", "ros"), ("cli", "ros"), ("evaluation", "cli"), ("replay", "ros"),
                                  ("messages", "ros"), ("messages", "replay")])
def test_the_order_forbids_upward_arrows(rule):
    src, dst = rule
    assert dst not in ALLOWED[src]


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    fake = tmp_path / PKG
    (fake / "grounding").mkdir(parents=True)
    (fake / "tracking").mkdir()
    for init in (fake / "__init__.py", fake / "grounding" / "__init__.py", fake / "tracking" / "__init__.py"):
        init.write_text("")
    (fake / "tracking" / "tracker.py").write_text("X = 1\n")
    (fake / "grounding" / "seg.py").write_text("def f():\n    from ..tracking import tracker\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {module_name(p): p for p in fake.rglob("*.py")})
    with pytest.raises(AssertionError, match=r"grounding -> tracking \(ros2_iterprime.tracking.tracker\)"):
        test_imports_point_down()


def test_public_api_is_stable_and_lazy():
    code = ("import sys, ros2_iterprime as r; assert 'torch' not in sys.modules, 'import must stay light'; "
            "from ros2_iterprime import (load_segmenter, SegmenterConfig, ReferringSegmenter, ReferringTracker, "
            "TrackResult, RegroundPolicy, load_tracker, SegmentationResult, InvalidInputError, ModelNotFoundError, "
            "NoImageError, IterPrimeError); "
            "from ros2_iterprime.grounding.segmenter import ReferringSegmenter as S; assert ReferringSegmenter is S; "
            "from ros2_iterprime.tracking import ReferringTracker as T, load_tracker as L; "
            "assert ReferringTracker is T and load_tracker is L; assert sorted(r.__all__) == sorted(set(r.__all__))")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
