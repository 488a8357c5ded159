"""``python -m flruntime.jobproc``: a job process (its spec is the first line of its input)."""

from __future__ import annotations

import logging
import sys

from flruntime.jobproc.control import read_spec


def main() -> int:
    """Read the spec, then run the server or site side of the job it names (the parent set its memory limit)."""
    spec = read_spec(sys.stdin)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    if spec.get("role") == "server":
        from flruntime.jobproc import server_job

        return server_job.main(spec, sys.stdin)
    from flruntime.jobproc import client_job

    return client_job.main(spec, sys.stdin)


if __name__ == "__main__":
    sys.exit(main())
