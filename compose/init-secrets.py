"""Create compose/.env from .env.example with random secrets, and the stamp keypair, once.

    ../.venv/bin/python init-secrets.py      (run ../mesh test or ../mesh up once to create .venv)

Existing files are kept, so it is safe to run again. The keypair comes from
mcpmesh.tenancy.stamp (EdDSA): secrets/stamp-signing.pem (gateway only), secrets/stamp-public.pem;
the master key of tenant secrets from mcpmesh.secrets: secrets/secrets-keys (services keeping them).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECRET_NAME = re.compile(r"^[A-Z0-9_]*(PASSWORD|SECRET|PEPPER|_KEY)$")


def fill(line: str) -> str:
    name, sep, value = line.partition("=")
    if not sep or value or not SECRET_NAME.match(name):
        return line
    prefix = "mk_admin_" if name == "MCPMESH_ADMIN_KEY" else ""
    return f"{name}={prefix}{secrets.token_hex(24)}"


def write_private(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(mode)


def main() -> int:
    env = HERE / ".env"
    if env.exists():
        print(f"kept {env}")
    else:
        lines = (HERE / ".env.example").read_text().splitlines()
        write_private(env, "\n".join(fill(line) for line in lines) + "\n", 0o600)
        print(f"wrote {env}")

    folder = HERE / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    master = folder / "secrets-keys"
    if master.exists():
        print(f"kept {master}")
    else:
        from mcpmesh.secrets import new_master_key_entry

        write_private(master, new_master_key_entry() + "\n", 0o644)  # 0644: as the keypair below
        print(f"wrote {master}")
    signing, public = folder / "stamp-signing.pem", folder / "stamp-public.pem"
    if signing.exists() and public.exists():
        print(f"kept {folder}/stamp-*.pem")
        return 0
    from mcpmesh.tenancy.stamp import generate_signing_key_pem, public_key_pem

    pem = generate_signing_key_pem()
    # 0644: compose bind-mounts file secrets with host permissions and the containers run as
    # uid 10001; the 0700 folder keeps other host users out.
    signing.unlink(missing_ok=True)
    public.unlink(missing_ok=True)
    write_private(signing, pem, 0o644)
    write_private(public, public_key_pem(pem), 0o644)
    print(f"wrote {signing} and {public}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
