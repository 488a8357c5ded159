"""Memory limits of job processes: sizes as people write them, and which limit applies to a job on a site.

A site sets a default for its jobs in its kit's ``local/resources.json`` (``"job_memory_limit": "4GiB"``) and may
cap what a job asks for (``"job_memory_max": "16GiB"``); a job sets its own in ``meta.json``
(``"resource_spec": {"site-1": {"memory_limit": "8GiB"}}``, ``"server"`` for the server's job process).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from flruntime.errors import UsageError

log = logging.getLogger(__name__)

#: Bytes per unit, lower-cased: binary ``KiB``/``MiB``/``GiB``/``TiB`` (also ``K``/``M``/``G``/``T`` and Kubernetes'
#: ``Ki``/``Mi``/``Gi``/``Ti``), decimal ``KB``/``MB``/``GB``/``TB``; a bare number is GiB.
UNITS = {
    "": 2**30,
    **{f"{p}{s}": 2 ** (10 * i) for i, p in enumerate("kmgt", 1) for s in ("", "i", "ib")},
    **{f"{p}b": 1000**i for i, p in enumerate("kmgt", 1)},
}

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: object, where: str) -> int | None:
    """Bytes from ``"4GiB"``, ``"512MiB"``, ``"2G"``, ``"1.5GiB"``, ``"100MB"`` or a number (of GiB).

    ``None``, ``""`` and ``0`` mean no limit (None).

    Args:
        value: the size as written in a JSON file.
        where: the file and key it came from, for the error message.

    Raises:
        UsageError: ``value`` is not a size, e.g.
            ``local/resources.json: job_memory_limit: '4 giga' is not a size (write e.g. "4GiB" or "512MiB")``.
    """
    if value is None or value == "" or (value == 0 and not isinstance(value, bool)):
        return None
    amount, unit = -1.0, ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = float(value)
    elif isinstance(value, str) and (match := _SIZE.match(value)) and match.group(2).lower() in UNITS:
        amount, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(amount) or amount < 0:
        raise UsageError(f'{where}: {value!r} is not a size (write e.g. "4GiB" or "512MiB")')
    return int(amount * UNITS[unit]) or None


def format_memory(size: int) -> str:
    """A size for people: ``4 GiB``, ``512 MiB``, ``1.5 GiB`` (up to 4 significant digits)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} B"


def memory_limit(site_resources: Mapping[str, Any], resource_spec: Mapping[str, Any] | None, site: str) -> int | None:
    """The memory limit (bytes) of a job's process on ``site``, or None for none.

    In order:

    1. the job's own ``meta.json`` ``resource_spec[site]["memory_limit"]``, when set;
    2. else the site's default, ``site_resources["job_memory_limit"]`` (its ``local/resources.json``);
    3. either way never above the site's ``site_resources["job_memory_max"]`` when the site sets one: a larger
       (or absent) limit is capped to that maximum, which is returned (and logged when a job asked for more).

    Args:
        site_resources: the site's ``local/resources.json``.
        resource_spec: the job's ``meta.json`` ``resource_spec`` (None when it has none).
        site: the site's name (``"server"`` for the server's job process).

    Raises:
        UsageError: a value is not a size, or ``resource_spec[site]`` is not an object.
    """
    wanted = (resource_spec or {}).get(site)
    if wanted is not None and not isinstance(wanted, Mapping):
        raise UsageError(f"meta.json: resource_spec.{site}: {wanted!r} is not an object (write e.g. "
                         '{"memory_limit": "4GiB"})')  # fmt: skip
    job = parse_memory((wanted or {}).get("memory_limit"), f"meta.json: resource_spec.{site}.memory_limit")
    default = parse_memory(site_resources.get("job_memory_limit"), "local/resources.json: job_memory_limit")
    most = parse_memory(site_resources.get("job_memory_max"), "local/resources.json: job_memory_max")
    limit = job if job is not None else default
    if most is not None and (limit is None or limit > most):
        if job is not None:
            log.warning("%s: the job asks for %s of memory; the site allows at most %s (job_memory_max)",
                        site, format_memory(job), format_memory(most))  # fmt: skip
        return most
    return limit


__all__ = ["UNITS", "format_memory", "memory_limit", "parse_memory"]
