# Shared base of every mcpmesh service image: Python 3.11, the pinned runtime dependencies,
# proto, libs and the health probe. Each services/<folder>/Dockerfile is `FROM` this plus its
# own source, so the heavy dependency layers are built once and shared by all images.
# Build context: the repository root.
#   docker build -f compose/base.Dockerfile -t mcpmesh-base .
# (docker compose builds it first by itself: see compose/README.md)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first (own layer: changes rarely). requirements.txt lists the dev and test tools
# (pytest, ruff, mypy, ...) after the "# dev and test" marker; images do not ship them.
COPY 3rdparty/python/requirements.txt 3rdparty/python/constraints.txt /tmp/deps/
RUN sed '/^# dev and test/,$d' /tmp/deps/requirements.txt > /tmp/deps/runtime.txt \
 && pip install -r /tmp/deps/runtime.txt -c /tmp/deps/constraints.txt \
 && rm -rf /tmp/deps

WORKDIR /app
COPY proto /app/proto
COPY libs /app/libs
COPY compose/probe /app/probe

# Source roots of the PEP 420 namespace `mcpmesh`: proto and every lib, found at build time
# (a new lib needs no edit here). The service image adds its own root with PYTHONPATH.
# Bytecode is compiled now because the root filesystem is read-only at run time.
RUN ls -d /app/proto /app/libs/*/ | sed 's:/$::' \
      > "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mcpmesh-source-roots.pth" \
 && python -m compileall -q /app/proto /app/libs \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mcpmesh

# Numeric so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
