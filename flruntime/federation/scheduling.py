"""When a submitted job may start: its clients online, their resources free.

Jobs whose ``custom/`` folders define modules of the same name run side by side: each runs in its own job process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Resource keys of ``resource_spec`` (meta.json) and of a client's ``local/resources.json``.
GPUS = "num_of_gpus"
GPU_MEMORY = "mem_per_gpu_in_GiB"


def free_gpus(resources: Mapping[str, Any], used: int) -> int:
    """GPUs of a site not taken by running jobs."""
    try:
        return int(resources.get(GPUS, 0)) - used
    except (TypeError, ValueError):
        return 0


def blocked_by_resources(
    spec: Mapping[str, Any], sites: Iterable[str], resources: Mapping[str, Mapping[str, Any]], used: Mapping[str, int]
) -> str:
    """Why ``resource_spec`` cannot be met now ("" when it can).

    Args:
        spec: the job's ``resource_spec`` (site → {num_of_gpus, mem_per_gpu_in_GiB}).
        sites: the job's sites.
        resources: each online site's resources.
        used: GPUs taken per site by running jobs.
    """
    for site in sites:
        want = spec.get(site)
        if not isinstance(want, Mapping):
            continue
        have = resources.get(site, {})
        need = int(want.get(GPUS, 0) or 0)
        if need and free_gpus(have, used.get(site, 0)) < need:
            return f"{site} has {free_gpus(have, used.get(site, 0))} free GPU(s), the job needs {need}"
        memory = float(want.get(GPU_MEMORY, 0) or 0)
        if need and memory and float(have.get(GPU_MEMORY, 0) or 0) < memory:
            return f"{site} has {have.get(GPU_MEMORY, 0)} GiB per GPU, the job needs {memory}"
    return ""
