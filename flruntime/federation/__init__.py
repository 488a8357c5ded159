"""Real deployments: a long-lived server and clients started from startup kits, over gRPC with mutual TLS."""

from flruntime.federation.admin import AdminSession
from flruntime.federation.client import FederationClient
from flruntime.federation.kit import Kit, load_kit
from flruntime.federation.server import FederationServer, Settings

__all__ = ["AdminSession", "FederationClient", "FederationServer", "Kit", "Settings", "load_kit"]
