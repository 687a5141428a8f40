"""The demo's model choice (ros2_iterprime/ros/demo_model.py): real weights wherever they can be had.

The hub-faithful cache (tests/hub_fixture.py) stands in for the real one; reaching the hub and fetching
are injected, so every branch runs offline: cache complete, HF_HUB_OFFLINE, hub unreachable, fetched,
fetch failed, and an explicit profile.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hub_fixture as hf  # noqa: E402

from ros2_iterprime.models.checkpoints import check_location  # noqa: E402
from ros2_iterprime.models.download import DownloadResult  # noqa: E402
from ros2_iterprime.ros.demo_model import MEANINGLESS, choose_demo_model, hub_reachable, main  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))  # read at import otherwise
    return tmp_path / "hf_home"


def _never(*a, **k):
    raise AssertionError("must not be called")


def test_a_complete_cache_runs_the_default_model_without_the_hub(home):
    hf.build_hub_cache(home, tracker=False)
    model, why = choose_demo_model(reachable=_never, fetch=_never)
    assert model == "default" and f"{hf.BLIP_REPO}, {hf.SAM_REPO} found in the model cache" in why
    # mode track also needs the profile's tracker
    model, why = choose_demo_model(track=True, reachable=lambda: (False, "x:443 unreachable (no route)"),
                                   fetch=_never)
    assert model == "tiny-random" and "facebook/sam2.1-hiera-tiny not in the cache" in why
    hf.build_hub_cache(home, tracker=True)
    assert choose_demo_model(track=True, reachable=_never, fetch=_never)[0] == "default"


def test_offline_without_weights_falls_back_with_one_line(home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, why = choose_demo_model(reachable=_never, fetch=_never)
    assert model == "tiny-random" and "\n" not in why
    assert f"{hf.BLIP_REPO} not in the cache" in why and "HF_HUB_OFFLINE=1 forbids fetching them" in why
    assert why.endswith(MEANINGLESS) and "meaningless" in MEANINGLESS


def test_unreachable_hub_falls_back(home):
    model, why = choose_demo_model(reachable=lambda: (False, "huggingface.co:443 unreachable (Name or service not "
                                                             "known)"), fetch=_never)
    assert model == "tiny-random" and "the hub is huggingface.co:443 unreachable" in why


def test_reachable_hub_fetches_then_runs_the_default_model(home):
    calls = []

    def fake_fetch(repos):  # lays the files out as huggingface_hub would after a download
        calls.append(repos)
        hf.build_hub_cache(home, tracker=False)
        return DownloadResult([check_location(r, k) for r, k in repos], {}, fetched=True)

    model, why = choose_demo_model(reachable=lambda: (True, ""), fetch=fake_fetch)
    assert model == "default" and "fetched" in why and calls == [[(hf.BLIP_REPO, "vlm"), (hf.SAM_REPO, "sam")]]


def test_a_failed_fetch_falls_back_with_what_is_missing(home):
    def failing_fetch(repos):
        return DownloadResult([check_location(r, k) for r, k in repos], {}, fetched=True)

    model, why = choose_demo_model(reachable=lambda: (True, ""), fetch=failing_fetch)
    assert model == "tiny-random" and "the download failed" in why


def test_an_explicit_profile_is_used_as_asked(home, capsys):
    assert choose_demo_model("tiny-random", reachable=_never, fetch=_never)[0] == "tiny-random"
    assert choose_demo_model("default", reachable=_never, fetch=_never)[0] == "default"
    assert main(["nonsense"]) == 2 and "unknown model 'nonsense'" in capsys.readouterr().err


def test_hub_reachable_reports_a_closed_port(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens on loopback
    ok, why = hub_reachable(timeout_s=2)
    assert not ok and "127.0.0.1:9 unreachable" in why
