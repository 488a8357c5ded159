"""gRPC plumbing: mutual-TLS credentials, the service's methods as raw bytes, the peer's certificate.

No protobuf: every method carries bytes (JSON control messages, or the wire codec's chunks), so nothing but
the codec decides what a message may hold. Both ends require TLS with certificates signed by the project
CA; the server reads the caller's name from its verified certificate, never from the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

SERVICE = "flruntime.Federation"

#: The site service's methods (the long-lived server process): name → kind: ``uu`` unary-unary, ``us``
#: unary-stream (server streams), ``su`` stream-unary.
METHODS: dict[str, str] = {
    "Register": "uu",
    "Heartbeat": "uu",
    "GetApp": "us",
    "JobFailed": "uu",
    "SubmitJob": "su",
    "Command": "uu",
    "DownloadJob": "us",
}

#: The job service's methods (a server job process, one per running job): the job's tasks, results, events
#: and reports.
JOB_METHODS: dict[str, str] = {
    "Join": "uu",
    "Pull": "us",
    "Submit": "su",
    "Event": "uu",
    "Report": "uu",
}

#: gRPC metadata key naming the calling site on a job process's local socket (no TLS there: the socket's
#: folder permissions decide who may connect; see :class:`flruntime.jobproc.service.LocalGate`).
SITE_HEADER = "fl-site"

#: Channel and server options: room for a chunk plus its framing, keepalives that notice dead peers.
OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
]


@dataclass(frozen=True)
class Identity:
    """Who is calling, from the certificate the TLS handshake verified.

    Attributes:
        name: the certificate's common name (the participant's name).
        org: its organisation.
        role: an admin's role (the certificate's unstructuredName), else empty.
        peer: the caller's address as gRPC reports it.
    """

    name: str
    org: str
    role: str
    peer: str


def server_credentials(cert: bytes, key: bytes, root_cert: bytes) -> grpc.ServerCredentials:
    """TLS credentials that make every caller present a certificate signed by ``root_cert``."""
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=root_cert, require_client_auth=True)


def secure_channel(target: str, cert: bytes, key: bytes, root_cert: bytes, server_name: str = "") -> grpc.Channel:
    """Open a mutual-TLS channel to ``target`` (``host:port``).

    Args:
        target: the server's address.
        cert: this participant's certificate (PEM).
        key: its private key (PEM).
        root_cert: the project CA's certificate (PEM): the server's certificate must be signed by it.
        server_name: check the server's certificate for this name instead of the target's host.
    """
    creds = grpc.ssl_channel_credentials(root_certificates=root_cert, private_key=key, certificate_chain=cert)
    options = list(OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, creds, options=options)


def identity(context: grpc.ServicerContext) -> Identity | None:
    """Return the caller's identity from its verified certificate, or None without one."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        return None
    cert = x509.load_pem_x509_certificate(pems[0])

    def first(oid: x509.ObjectIdentifier) -> str:
        attrs = cert.subject.get_attributes_for_oid(oid)
        return str(attrs[0].value) if attrs else ""

    return Identity(
        first(NameOID.COMMON_NAME), first(NameOID.ORGANIZATION_NAME), first(NameOID.UNSTRUCTURED_NAME), context.peer()
    )


def generic_handler(servicer: Any, methods: dict[str, str] = METHODS) -> grpc.GenericRpcHandler:
    """Route every method of ``methods`` to ``servicer.<snake_case name>`` with raw bytes in and out."""
    factories: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
        "uu": grpc.unary_unary_rpc_method_handler,
        "us": grpc.unary_stream_rpc_method_handler,
        "su": grpc.stream_unary_rpc_method_handler,
    }
    handlers = {name: factories[kind](getattr(servicer, _snake(name))) for name, kind in methods.items()}
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class Stub:
    """Calls a service's methods over a channel (bytes in, bytes out).

    Args:
        channel: the channel.
        methods: the service's methods (:data:`METHODS` or :data:`JOB_METHODS`).
        metadata: sent with every call (e.g. :data:`SITE_HEADER` on a job process's local socket).
    """

    def __init__(
        self, channel: grpc.Channel, methods: dict[str, str] = METHODS, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.channel = channel
        self.metadata = metadata or None
        makers = {"uu": channel.unary_unary, "us": channel.unary_stream, "su": channel.stream_unary}
        self._calls = {name: makers[kind](f"/{SERVICE}/{name}") for name, kind in methods.items()}

    def unary(self, method: str, request: bytes, timeout: float | None = None) -> bytes:
        """Call a unary method."""
        return self._calls[method](request, timeout=timeout, metadata=self.metadata)

    def stream_out(self, method: str, request: bytes, timeout: float | None = None) -> Iterator[bytes]:
        """Call a method that streams its reply."""
        return self._calls[method](request, timeout=timeout, metadata=self.metadata)

    def stream_in(self, method: str, requests: Iterator[bytes], timeout: float | None = None) -> bytes:
        """Call a method that takes a stream."""
        return self._calls[method](requests, timeout=timeout, metadata=self.metadata)


__all__ = [
    "JOB_METHODS",
    "METHODS",
    "SITE_HEADER",
    "OPTIONS",
    "SERVICE",
    "Identity",
    "Stub",
    "generic_handler",
    "identity",
    "secure_channel",
    "server_credentials",
]
