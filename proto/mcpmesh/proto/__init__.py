"""The contract: every type that crosses the bus, subject names and error codes."""
