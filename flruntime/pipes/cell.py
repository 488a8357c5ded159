"""NVFlare's ``CellPipe``, accepted with its constructor arguments and carried by a loopback socket pipe.

Differences from NVFlare: NVFlare's CellPipe routes messages through the site's cell network (``root_url``,
TLS certificates from ``workspace_dir`` when ``secure_mode``). flruntime's executor and the script it launches
always run on the same machine, so this class is a PASSIVE :class:`~flruntime.pipes.tcp.SocketPipe` on
127.0.0.1 (a port the system picks, a random per-pipe secret the script must present, no TLS: the traffic
never leaves the loopback interface). ``root_url``, ``secure_mode`` and ``workspace_dir`` are accepted and
ignored; ``site_name`` and ``token`` name the pipe in logs. The peer side is exported as a SocketPipe.
"""

from __future__ import annotations

from flruntime.pipes.base import Mode, parse_mode
from flruntime.pipes.tcp import SocketPipe


class CellPipe(SocketPipe):
    """A PASSIVE loopback socket pipe configured with NVFlare's CellPipe arguments.

    Args:
        mode: must be ``PASSIVE`` (the script's ACTIVE side is written to ``client_api_config.json``).
        site_name: the site (``{SITE_NAME}``).
        token: NVFlare's pipe token (``{JOB_ID}``); kept for logs.
        root_url: accepted for compatibility, not used.
        secure_mode: accepted for compatibility, not used (the pipe is loopback-only and secret-protected).
        workspace_dir: accepted for compatibility, not used.
    """

    def __init__(
        self,
        mode: str,
        site_name: str,
        token: str,
        root_url: str = "",
        secure_mode: bool | str = True,
        workspace_dir: str = "",
    ) -> None:
        if parse_mode(mode) is not Mode.PASSIVE:
            raise ValueError(
                "CellPipe supports only mode PASSIVE in flruntime: the script's side is written to "
                "client_api_config.json as a SocketPipe"
            )
        super().__init__(mode=mode)
        self.site_name = site_name
        self.token = token
        self.root_url = root_url
        self.secure_mode = secure_mode
        self.workspace_dir = workspace_dir
        self.site = site_name
