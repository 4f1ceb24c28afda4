"""dxp: Optimizely DXP operations for every org, with its own credentials (see README.md)."""
