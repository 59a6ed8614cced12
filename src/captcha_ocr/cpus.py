"""How many CPU cores this process may use, and the thread and process counts that follow.

``os.cpu_count()`` counts the machine's cores, but a process pinned to some of them
(``taskset``, a batch scheduler) or a container with a CPU limit (Docker's ``--cpus``,
Kubernetes' ``resources.limits.cpu``: a cgroup quota) gets fewer. Sizing threads or
workers by the machine's count there oversubscribes the cores it has, and latency
suffers. Standard library only: the reading path uses it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["MAX_AUTO_WORKERS", "default_workers", "usable_cores"]

CGROUP = Path("/sys/fs/cgroup")


def _affinity() -> int:
    """Cores the scheduler lets this process run on (the machine's count elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _quota(root: Path = CGROUP) -> float | None:
    """The CPU limit of this process's cgroup in cores, or None where there is none.

    cgroup v2: ``cpu.max`` holds "QUOTA PERIOD" or "max PERIOD"; v1:
    ``cpu/cpu.cfs_quota_us`` (-1: none) over ``cpu/cpu.cfs_period_us``.
    """
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def usable_cores(root: Path = CGROUP) -> int:
    """The cores this process may use: its CPU affinity, lowered to a cgroup CPU limit
    (rounded up: a fraction of a core still runs a thread), at least 1."""
    cores = _affinity()
    quota = _quota(root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


# Processes `serve` starts unasked: one per usable core, at most this many. Each holds its
# own model, runtime and batcher (about 140 MB here), so a machine of many cores does not
# get dozens of them unless told (`--workers N`).
MAX_AUTO_WORKERS = 8


def default_workers(provider: str = "cpu") -> int:
    """Worker processes for ``serve`` when none is named: one per core this process may
    use (one process keeps under one core busy: its Python work takes turns under one
    lock; on 2 cores two served about twice the requests), at most ``MAX_AUTO_WORKERS``;
    one on CUDA, where each process would hold a GPU context of its own."""
    if provider != "cpu":
        return 1
    return min(usable_cores(), MAX_AUTO_WORKERS)
