"""The NATS bus: connection, deadline-bound requests (re-sent only when undelivered), JetStream
streams, KV, and stopping the background tasks that wait on it (`cancel_until_done`)."""

from mcpmesh.bus.connection import NO_RESPONDERS, Bus, NotDelivered, connect, flush, redact_url
from mcpmesh.bus.request import Deadline
from mcpmesh.bus.stopping import cancel_until_done

__all__ = [
    "NO_RESPONDERS",
    "Bus",
    "Deadline",
    "NotDelivered",
    "cancel_until_done",
    "connect",
    "flush",
    "redact_url",
]
