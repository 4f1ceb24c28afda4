"""The edge gateway: MCP Streamable HTTP for clients (2026-07-28 and 2025-11-25), API keys,
limits and routing onto the tenant-stamped NATS bus; hosts the control plane (`control`)."""
