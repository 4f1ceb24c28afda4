"""The NATS bus: connection, deadline-bound requests with retry, JetStream streams, KV."""

from mcpmesh.bus.connection import Bus, connect
from mcpmesh.bus.request import Deadline

__all__ = ["Bus", "Deadline", "connect"]
