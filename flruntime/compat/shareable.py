"""NVFlare's ``Shareable``: the dict a task's data and a task's result travel in (``nvflare.apis.shareable``).

A Shareable is a plain ``dict`` whose key ``__headers__`` holds the headers (return code, peer properties,
cookies, ...); a DXO, when there is one, sits under the key ``DXO`` (see :mod:`flruntime.compat.dxo`). On the
wire flruntime never sends a Shareable: the engines turn it into the codec's arrays and JSON (see
:mod:`flruntime.compat.adapters`), and :mod:`flruntime.compat.fobs` serialises one without pickle.
"""

from __future__ import annotations

import copy
from typing import Any

from flruntime.compat.constants import ReservedHeaderKey, ReturnCode


class Shareable(dict[str, Any]):
    """Task data or a task result: a dict with headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Make a Shareable (``Shareable()`` or from a dict); it always has a headers dict."""
        super().__init__(*args, **kwargs)
        if not isinstance(self.get(ReservedHeaderKey.HEADERS), dict):
            self[ReservedHeaderKey.HEADERS] = {}

    def _headers(self) -> dict[str, Any]:
        headers = self.get(ReservedHeaderKey.HEADERS)
        if not isinstance(headers, dict):
            headers = {}
            self[ReservedHeaderKey.HEADERS] = headers
        return headers

    def set_header(self, key: str, value: Any) -> None:
        """Set header ``key``."""
        self._headers()[key] = value

    def get_header(self, key: str, default: Any = None) -> Any:
        """Header ``key``, else ``default``."""
        return self._headers().get(key, default)

    def remove_header(self, key: str) -> None:
        """Drop header ``key`` (nothing when absent)."""
        self._headers().pop(key, None)

    def get_return_code(self, default: str = ReturnCode.OK) -> str:
        """The reply's return code (``OK`` when none was set)."""
        return str(self.get_header(ReservedHeaderKey.RC, default))

    def set_return_code(self, rc: str) -> None:
        """Set the reply's return code."""
        self.set_header(ReservedHeaderKey.RC, rc)

    def add_cookie(self, name: str, data: Any) -> None:
        """Put a cookie in the cookie jar: the server's task sends it, the client's reply brings it back."""
        jar = self.get_header(ReservedHeaderKey.COOKIE_JAR)
        if not isinstance(jar, dict):
            jar = {}
            self.set_header(ReservedHeaderKey.COOKIE_JAR, jar)
        jar[name] = data

    def get_cookie_jar(self) -> dict[str, Any] | None:
        """The cookie jar, if any."""
        jar = self.get_header(ReservedHeaderKey.COOKIE_JAR)
        return jar if isinstance(jar, dict) else None

    def set_cookie_jar(self, jar: dict[str, Any] | None) -> None:
        """Replace the cookie jar."""
        self.set_header(ReservedHeaderKey.COOKIE_JAR, jar)

    def get_cookie(self, name: str, default: Any = None) -> Any:
        """Cookie ``name``, else ``default``."""
        jar = self.get_cookie_jar()
        return default if jar is None else jar.get(name, default)

    def set_peer_props(self, props: dict[str, Any]) -> None:
        """Set the sender's public FLContext properties (the engine does this)."""
        self.set_header(ReservedHeaderKey.PEER_PROPS, props)

    def get_peer_props(self) -> dict[str, Any] | None:
        """The sender's public properties (identity, job id, ...)."""
        props = self.get_header(ReservedHeaderKey.PEER_PROPS)
        return props if isinstance(props, dict) else None

    def get_peer_prop(self, key: str, default: Any = None) -> Any:
        """One of the sender's public properties."""
        props = self.get_peer_props()
        return default if props is None else props.get(key, default)

    def to_bytes(self) -> bytes:
        """Serialise with :mod:`flruntime.compat.fobs` (no pickle)."""
        from flruntime.compat import fobs

        return fobs.dumps(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Shareable:
        """The Shareable :meth:`to_bytes` made."""
        from flruntime.compat import fobs

        obj = fobs.loads(data)
        if not isinstance(obj, Shareable):
            raise ValueError(f"the bytes hold a {type(obj).__name__}, not a Shareable")
        return obj


def make_reply(rc: str, headers: dict[str, Any] | None = None) -> Shareable:
    """An empty reply with return code ``rc`` (and ``headers``)."""
    reply = Shareable()
    reply.set_return_code(rc)
    for key, value in (headers or {}).items():
        reply.set_header(key, value)
    return reply


def make_copy(source: Shareable) -> Shareable:
    """A copy of ``source`` whose headers can change independently (the data is shared)."""
    out = Shareable(source)
    out[ReservedHeaderKey.HEADERS] = copy.deepcopy(source.get(ReservedHeaderKey.HEADERS) or {})
    return out


__all__ = ["ReservedHeaderKey", "ReturnCode", "Shareable", "make_copy", "make_reply"]
