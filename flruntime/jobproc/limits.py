"""Memory limits of job processes: sizes as people write them, and which limit applies to a job on a site.

A site sets a default for its jobs in its kit's ``local/resources.json`` (``"job_memory_limit": "4GiB"``) and may
cap what a job asks for (``"job_memory_max": "16GiB"``); a job sets its own in ``meta.json``
(``"resource_spec": {"site-1": {"memory_limit": "8GiB"}}``, ``"server"`` for the server's job process).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flruntime.errors import UsageError

#: Bytes per unit (binary units MiB/GiB, decimal MB/GB; a bare number is GiB).
UNITS = {
    "": 2**30,
    "k": 1000,
    "kb": 1000,
    "kib": 2**10,
    "m": 2**20,
    "mb": 1000**2,
    "mib": 2**20,
    "g": 2**30,
    "gb": 1000**3,
    "gib": 2**30,
    "t": 2**40,
    "tb": 1000**4,
    "tib": 2**40,
}

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: object, where: str) -> int | None:
    """Bytes from ``"4GiB"``, ``"512MiB"``, ``"2G"``, ``"100MB"`` or a number of GiB; None for no limit.

    Raises:
        UsageError: ``value`` is not a size (the message names ``where``).
    """
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise UsageError(f'{where}: {value!r} is not a size (write e.g. "4GiB" or "512MiB")')
    if isinstance(value, (int, float)):
        amount, unit = float(value), ""
    else:
        match = _SIZE.match(str(value))
        if match is None or match.group(2).lower() not in UNITS:
            raise UsageError(f'{where}: {value!r} is not a size (write e.g. "4GiB" or "512MiB")')
        amount, unit = float(match.group(1)), match.group(2).lower()
    if amount <= 0:
        return None
    return int(amount * UNITS[unit])


def format_memory(size: int) -> str:
    """``4294967296`` → ``4 GiB``; ``536870912`` → ``512 MiB``."""
    if size >= 2**30:
        return f"{size / 2**30:.4g} GiB"
    return f"{size / 2**20:.4g} MiB"


def memory_limit(site_resources: Mapping[str, Any], resource_spec: Mapping[str, Any], site: str) -> int | None:
    """The memory limit of a job's process on ``site`` (bytes, or None for none).

    The job's ``resource_spec[site]["memory_limit"]`` wins over the site's ``job_memory_limit``; neither may
    go above the site's ``job_memory_max`` when it sets one (then the maximum applies).

    Raises:
        UsageError: a value is not a size.
    """
    wanted = resource_spec.get(site)
    job = (
        parse_memory(wanted.get("memory_limit"), f"meta.json: resource_spec.{site}.memory_limit")
        if isinstance(wanted, Mapping)
        else None
    )
    default = parse_memory(site_resources.get("job_memory_limit"), "local/resources.json: job_memory_limit")
    most = parse_memory(site_resources.get("job_memory_max"), "local/resources.json: job_memory_max")
    limit = job if job is not None else default
    if most is not None and (limit is None or limit > most):
        return most
    return limit


__all__ = ["format_memory", "memory_limit", "parse_memory"]
