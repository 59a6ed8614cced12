"""Cores this process may use: CPU affinity, cgroup v1 and v2 CPU limits; serve's workers."""

from __future__ import annotations

import os

import pytest

from captcha_ocr import cpus
from captcha_ocr.cli import build_parser


def _affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _cgroup_v2(root, text):
    root.mkdir(exist_ok=True)
    (root / "cpu.max").write_text(text)
    return root


def _cgroup_v1(root, quota, period="100000"):
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_without_a_cgroup_limit_the_affinity_counts(tmp_path):
    assert cpus.usable_cores(tmp_path) == _affinity()  # no cgroup files at all
    assert cpus.usable_cores(_cgroup_v2(tmp_path / "v2", "max 100000\n")) == _affinity()
    assert cpus.usable_cores(_cgroup_v1(tmp_path / "v1", -1)) == _affinity()


@pytest.mark.parametrize("quota, cores", [("50000", 1), ("100000", 1), ("150000", 2)])
def test_a_cgroup_v2_limit_lowers_the_count(tmp_path, quota, cores):
    # rounded up: half a core still runs one thread, 1.5 cores two
    root = _cgroup_v2(tmp_path, f"{quota} 100000\n")
    assert cpus.usable_cores(root) == min(cores, _affinity())


def test_a_cgroup_v1_limit_lowers_the_count(tmp_path):
    assert cpus.usable_cores(_cgroup_v1(tmp_path, 100000)) == 1


def test_a_limit_above_the_affinity_changes_nothing(tmp_path):
    assert cpus.usable_cores(_cgroup_v2(tmp_path, "6400000 100000\n")) == _affinity()


def test_an_unreadable_limit_is_no_limit(tmp_path):
    assert cpus.usable_cores(_cgroup_v2(tmp_path, "garbage\n")) == _affinity()


def test_serve_starts_one_worker_per_core_up_to_a_cap(monkeypatch):
    monkeypatch.setattr(cpus, "usable_cores", lambda: 2)
    assert cpus.default_workers() == 2
    assert cpus.default_workers("cuda") == 1  # one GPU context, not one per core
    monkeypatch.setattr(cpus, "usable_cores", lambda: 96)
    assert cpus.default_workers() == cpus.MAX_AUTO_WORKERS


@pytest.mark.parametrize("value, workers", [([], None), (["--workers", "auto"], None),
                                            (["--workers", "3"], 3)])
def test_serve_workers_option(value, workers):
    assert build_parser().parse_args(["serve", *value]).workers == workers


def test_serve_refuses_zero_workers(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])
    assert "--workers" in capsys.readouterr().err
