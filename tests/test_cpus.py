"""Cores this process may use: CPU affinity, cgroup v1 and v2 limits; serve's workers."""

from __future__ import annotations

import os

import pytest

from captcha_ocr import cpus
from captcha_ocr.cli import build_parser


def _affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _v2(tmp_path, where: str, files: dict[str, dict[str, str]]):
    """A cgroup v2 tree (``files``: folder under the root -> its files) and a
    /proc/self/cgroup placing this process at ``where``."""
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    for folder, content in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, text in content.items():
            (root / folder / name).write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(f"0::{where}\n")
    return root, proc


def _v1(tmp_path, quota: str, period: str = "100000", memory: str | None = None):
    root = tmp_path / "cgroup"
    (root / "cpu,cpuacct").mkdir(parents=True)
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text(f"{period}\n")
    (root / "memory" / "job").mkdir(parents=True)
    (root / "memory" / "job" / "memory.limit_in_bytes").write_text(memory or "9223372036854771712\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("5:memory:/job\n3:cpu,cpuacct:/\n0::/\n")
    return root, proc


def test_without_a_cgroup_limit_the_affinity_counts(tmp_path):
    assert cpus.usable_cores(tmp_path, tmp_path / "absent") == _affinity()
    root, proc = _v2(tmp_path / "a", "/", {".": {"cpu.max": "max 100000\n", "memory.max": "max\n"}})
    assert cpus.usable_cores(root, proc) == _affinity() and cpus.memory_limit(root, proc) is None
    root, proc = _v1(tmp_path / "b", "-1")
    assert cpus.usable_cores(root, proc) == _affinity() and cpus.memory_limit(root, proc) is None


@pytest.mark.parametrize("quota, cores", [("50000", 1), ("100000", 1), ("150000", 2)])
def test_a_cgroup_v2_limit_lowers_the_count(tmp_path, quota, cores):
    # rounded up: half a core still runs one thread, 1.5 cores two
    root, proc = _v2(tmp_path, "/", {".": {"cpu.max": f"{quota} 100000\n"}})
    assert cpus.usable_cores(root, proc) == min(cores, _affinity())


def test_a_limit_on_a_parent_cgroup_holds(tmp_path):
    """systemd's CPUQuota= on a slice, or a container in the host's cgroup namespace:
    the limit sits above the process's own cgroup; the tightest on the way up holds."""
    root, proc = _v2(tmp_path, "/system.slice/app.service", {
        "system.slice": {"cpu.max": "100000 100000\n", "memory.max": "300000000\n"},
        "system.slice/app.service": {"cpu.max": "max 100000\n", "memory.max": "max\n"}})
    assert cpus.usable_cores(root, proc) == 1
    assert cpus.memory_limit(root, proc) == 300_000_000


def test_a_cgroup_v1_limit_lowers_the_count(tmp_path):
    root, proc = _v1(tmp_path, "100000", memory="536870912\n")
    assert cpus.usable_cores(root, proc) == 1 and cpus.memory_limit(root, proc) == 512 * 2**20


def test_a_limit_above_the_affinity_changes_nothing(tmp_path):
    root, proc = _v2(tmp_path, "/", {".": {"cpu.max": "6400000 100000\n"}})
    assert cpus.usable_cores(root, proc) == _affinity()


@pytest.mark.parametrize("text", ["garbage\n", "100000 0\n", "100000\n", ""])
def test_an_unreadable_limit_is_no_limit(tmp_path, text):
    root, proc = _v2(tmp_path, "/", {".": {"cpu.max": text}})
    assert cpus.usable_cores(root, proc) == _affinity()


def test_serve_starts_one_worker_per_core_up_to_a_cap_and_the_memory(monkeypatch):
    monkeypatch.setattr(cpus, "usable_cores", lambda: 2)
    monkeypatch.setattr(cpus, "memory_limit", lambda: None)
    assert cpus.default_workers() == 2
    assert cpus.default_workers("cuda") == 1  # one GPU context, not one per core
    monkeypatch.setattr(cpus, "usable_cores", lambda: 96)
    assert cpus.default_workers() == cpus.MAX_AUTO_WORKERS
    monkeypatch.setattr(cpus, "memory_limit", lambda: 3 * cpus.WORKER_MEMORY + 1)
    assert cpus.default_workers() == 3  # a container with 96 cores and ~770 MB
    monkeypatch.setattr(cpus, "memory_limit", lambda: 100 * 2**20)
    assert cpus.default_workers() == 1


@pytest.mark.parametrize("value, workers", [([], None), (["--workers", "auto"], None),
                                            (["--workers", "3"], 3)])
def test_serve_workers_option(value, workers):
    assert build_parser().parse_args(["serve", *value]).workers == workers


def test_serve_refuses_zero_workers(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])
    assert "--workers" in capsys.readouterr().err
