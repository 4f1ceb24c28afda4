"""meshctl: drive the gateway's admin API from a shell (stdlib only)."""
