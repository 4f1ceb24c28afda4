"""`python -m mcpmesh.secrets new-key [ID]`: print a fresh master key entry for MCPMESH_SECRETS_KEYS."""

from __future__ import annotations

import sys

from mcpmesh.secrets.keys import SecretsConfigError, new_master_key_entry


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "new-key" or len(argv) > 2:
        print("usage: python -m mcpmesh.secrets new-key [ID]", file=sys.stderr)
        return 2
    try:
        print(new_master_key_entry(argv[1] if len(argv) == 2 else None))
    except SecretsConfigError as exc:
        print(f"mcpmesh.secrets: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
