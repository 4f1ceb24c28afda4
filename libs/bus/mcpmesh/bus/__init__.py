"""The NATS bus: connection, deadline-bound requests with retry, JetStream streams, KV."""

from mcpmesh.bus.connection import Bus, connect, redact_url
from mcpmesh.bus.request import Deadline

__all__ = ["Bus", "Deadline", "connect", "redact_url"]
