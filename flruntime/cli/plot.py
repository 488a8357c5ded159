"""``flruntime plot JOB_RESULT_DIR``: training curves, system metrics and the cross-site matrix as PNG files."""

from __future__ import annotations

import argparse
from typing import Any

from flruntime.exit_codes import ExitCode


def register(verbs: Any) -> None:
    """Add the ``plot`` verb."""
    p = verbs.add_parser(
        "plot",
        help="draw a job's curves, system metrics and cross-site matrix as PNG files",
        description="Draw a downloaded federation job (flruntime job download) or a simulator workspace as PNG "
        "files: one training curve per metric (a line per site), the sites' system metrics, the cross-site "
        "validation heatmap. Prints the files written.",
    )
    p.add_argument("folder", metavar="JOB_RESULT_DIR")
    p.add_argument("-o", "--output", metavar="OUT_DIR", help="where to write (default: JOB_RESULT_DIR/plots)")
    p.set_defaults(func=_plot)


def _plot(args: argparse.Namespace) -> int:
    from flruntime.plot_job import plot_job

    for path in plot_job(args.folder, args.output):
        print(path)
    return int(ExitCode.OK)
