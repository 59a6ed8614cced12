"""How many CPU cores this process may use, and the thread and process counts that follow.

``os.cpu_count()`` counts the machine's cores, but a process pinned to some of them
(``taskset``, a batch scheduler) or in a cgroup with a CPU limit (Docker's ``--cpus``,
Kubernetes' ``resources.limits.cpu``, systemd's ``CPUQuota=``) gets fewer. Sizing
threads or workers by the machine's count there oversubscribes the cores it has, and
latency suffers. Standard library only: the reading path uses it.

The cgroup limits are read where ``/proc/self/cgroup`` places this process, in cgroup v2
(``cpu.max``, ``memory.max``) or v1 (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``,
``memory.limit_in_bytes``), in its own cgroup and every parent up to the hierarchy's
root: the tightest one holds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["MAX_AUTO_WORKERS", "WORKER_MEMORY", "default_workers", "memory_limit", "usable_cores"]

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _affinity() -> int:
    """Cores the scheduler lets this process run on (the machine's count elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cgroup_dirs(controller: str, root: Path, proc: Path) -> list[Path]:
    """This process's cgroup folders for ``controller`` ("cpu", "memory"): its own, then
    each parent up to the hierarchy's root (cgroup v2's unified one, or v1's for that
    controller). Empty where there is no cgroup file system."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: "0::/path"
            base = root if (root / "cgroup.controllers").is_file() else root / "unified"
        elif controller in controllers.split(","):  # v1: "4:cpu,cpuacct:/path"
            base = root / controllers if (root / controllers).is_dir() else root / controller
        else:
            continue
        if not base.is_dir():
            continue
        here = base / path.strip("/")
        dirs = [here, *here.parents]
        found = [d for d in dirs[: dirs.index(base) + 1] if d.is_dir()] if base in dirs else [base]
        if controllers or any((d / f"{controller}.max").is_file() for d in found):
            return found  # v1, or a v2 hierarchy with this controller enabled
    return []


def _read_number(path: Path) -> float | None:
    """A limit file's number: None where absent, unreadable, "max" or not a number."""
    try:
        text = path.read_text().split()
        return None if not text or text[0] == "max" else float(text[0])
    except (OSError, ValueError):
        return None


def _cpu_quota(root: Path = CGROUP, proc: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU limit of this process's cgroups in cores, None where there is none."""
    limits = []
    for d in _cgroup_dirs("cpu", root, proc):
        if (d / "cpu.max").is_file():  # v2: "QUOTA PERIOD" or "max PERIOD"
            try:
                text = (d / "cpu.max").read_text().split()
                quota = None if text[0] == "max" else float(text[0])
                period = float(text[1])
            except (OSError, ValueError, IndexError):
                quota, period = None, 0
        else:  # v1: quota -1 for none
            quota, period = _read_number(d / "cpu.cfs_quota_us"), _read_number(d / "cpu.cfs_period_us")
        if quota is not None and quota > 0 and period:
            limits.append(quota / period)
    return min(limits, default=None)


def memory_limit(root: Path = CGROUP, proc: Path = PROC_CGROUP) -> int | None:
    """The tightest memory limit of this process's cgroups in bytes, None where there is
    none (v1 writes "no limit" as a number near 2**63)."""
    limits = []
    for d in _cgroup_dirs("memory", root, proc):
        value = _read_number(d / "memory.max") if (d / "memory.max").is_file() \
            else _read_number(d / "memory.limit_in_bytes")
        if value is not None and 0 < value < 2**60:
            limits.append(int(value))
    return min(limits, default=None)


def usable_cores(root: Path = CGROUP, proc: Path = PROC_CGROUP) -> int:
    """The cores this process may use: its CPU affinity, lowered to a cgroup CPU limit
    (rounded up: a fraction of a core still runs a thread), at least 1."""
    cores = _affinity()
    quota = _cpu_quota(root, proc)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


# Processes `serve` starts unasked: one per usable core, at most this many. Each holds its
# own model, runtime and batcher (about 140 MB here), so a machine of many cores does not
# get dozens of them unless told (`--workers N`).
MAX_AUTO_WORKERS = 8
# Memory to allow a worker under a memory limit: 140-150 MB measured per worker of the
# bundled model (bench/serve_bench.py), and the supervisor's ~100 MB, with room to spare.
WORKER_MEMORY = 256 * 1024 * 1024


def default_workers(provider: str = "cpu") -> int:
    """Worker processes for ``serve`` when none is named: one per core this process may
    use (one process keeps under one core busy: its Python work takes turns under one
    lock; on 2 cores two served 1.5-1.7x the requests), at most ``MAX_AUTO_WORKERS`` and
    as many as a cgroup memory limit holds at ``WORKER_MEMORY`` each; one on CUDA, where
    each process would hold a GPU context of its own."""
    if provider != "cpu":
        return 1
    workers = min(usable_cores(), MAX_AUTO_WORKERS)
    memory = memory_limit()
    if memory is not None:
        workers = min(workers, max(1, memory // WORKER_MEMORY))
    return workers
