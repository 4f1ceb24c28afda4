"""The gateway's control plane: organizations, API keys, usage, audit and the admin API.

The front of the gateway uses `ControlPlane.authenticate` on every request and
`note_key_use` after it; `add_routes` mounts the admin API under `/admin`.
"""

from mcpmesh.gateway.control.plane import ControlPlane
from mcpmesh.gateway.control.principal import AUTH_FAILURES, AuthFailed, Principal

__all__ = ["AUTH_FAILURES", "AuthFailed", "ControlPlane", "Principal"]
