"""`python -m mcpmesh.debate`: serve on NATS (or --stdio / --http PORT for local development)."""

from mcpmesh.debate.service import build_service
from mcpmesh.service import run

if __name__ == "__main__":
    run(build_service())
