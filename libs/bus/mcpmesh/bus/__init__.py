"""The NATS bus: connection, deadline-bound requests (re-sent only when undelivered), JetStream streams, KV."""

from mcpmesh.bus.connection import NO_RESPONDERS, Bus, NotDelivered, connect, flush, redact_url
from mcpmesh.bus.request import Deadline

__all__ = ["NO_RESPONDERS", "Bus", "Deadline", "NotDelivered", "connect", "flush", "redact_url"]
