# The p2pcache node as an appliance: `docker compose up` (compose.yaml), or
#   docker run -p 9100:9100 -v p2pcache-data:/data -e GH_TOKEN p2pcache [serve flags...]
#
# Two ways to build (docs/docker.md):
#   make image            offline: wheels come from docker/wheelhouse/, filled on the host,
#                         and the build runs with --network=none on a local Debian base
#   docker compose build  online: the same Dockerfile installs from PyPI, pinned by
#                         docker/requirements.lock, on debian:bookworm-slim
# Plain Dockerfile syntax (no BuildKit-only features), so the legacy builder works too.

ARG BASE_IMAGE=debian:bookworm-slim

# -- python: Debian bookworm with Python 3.11 and the few libraries the wheels link --------
# A base made by docker/base-image.sh has all of it already: then no apt runs here.
FROM ${BASE_IMAGE} AS python
RUN set -eu; \
    need=""; \
    command -v python3 >/dev/null 2>&1 || need="$need python3"; \
    [ -s /etc/ssl/certs/ca-certificates.crt ] || need="$need ca-certificates"; \
    ldconfig -p | grep -q 'libgmp\.so\.10 ' || need="$need libgmp10"; \
    if [ -n "$need" ]; then \
        echo "installing with apt:$need"; \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'

# -- build: node/ and its pinned dependencies into a virtual environment --------------------
FROM python AS build
RUN set -eu; \
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/p2pcache
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
COPY docker/requirements.lock /tmp/requirements.lock
COPY docker/wheelhouse/ /wheels/
# Dependencies first (a layer that survives changes to node/): from the wheelhouse when it
# has wheels, with no index at all; else from PyPI at the same pinned versions, with a
# compiler for the dependencies PyPI has only as source (fastecdsa).
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then \
        echo "offline: installing from the wheelhouse only"; \
        echo "--no-index --find-links /wheels" >/tmp/pip-source; \
    else \
        echo "no wheelhouse: installing from the package index"; \
        : >/tmp/pip-source; \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            gcc libc6-dev python3-dev libgmp-dev; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    /opt/p2pcache/bin/pip install $(cat /tmp/pip-source) -r /tmp/requirements.lock
COPY node/ /src/node/
# --no-deps: every dependency is pinned above; `pip check` fails the build when
# node/pyproject.toml wants one the lock lacks (re-pin with docker/lock.sh).
RUN set -eu; \
    /opt/p2pcache/bin/pip install $(cat /tmp/pip-source) --no-deps --no-build-isolation \
        /src/node; \
    /opt/p2pcache/bin/pip check || { \
        echo "docker/requirements.lock does not satisfy node/pyproject.toml:" \
             "run 'bash docker/lock.sh'" >&2; exit 1; }; \
    /opt/p2pcache/bin/pip uninstall --yes --quiet setuptools pip

# -- runtime: the virtual environment on the slim base, as an unprivileged user -------------
FROM python AS runtime
RUN set -eu; \
    groupadd --system --gid 10001 p2pcache; \
    useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin p2pcache; \
    mkdir -p /data; \
    chown 10001:10001 /data; \
    chmod 0700 /data
COPY --from=build /opt/p2pcache /opt/p2pcache
COPY docker/healthcheck.py /opt/p2pcache/healthcheck.py
ENV PATH=/opt/p2pcache/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    P2P_CACHE_DATA_DIR=/data \
    P2P_CACHE_HTTP=0.0.0.0:9180
# Every shared library the wheels link must exist here (wheels built on the host from
# sdists link system libraries, e.g. fastecdsa -> libgmp), and the node must import.
RUN set -eu; \
    missing=$(find /opt/p2pcache -name '*.so*' -type f -exec sh -c \
        'ldd "$1" | grep "not found" | sed "s|^|$1: |"' _ {} \;); \
    if [ -n "$missing" ]; then echo "$missing" >&2; exit 1; fi; \
    python3 -c 'import p2pcache.node, p2pcache.cli, p2pcache.mcp'; \
    p2pcache --version

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9100/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/p2pcache/bin/python", "-I", "/opt/p2pcache/healthcheck.py"]
# The node closes its store (and removes its UPnP mapping) on SIGTERM, well within the
# stop timeout compose.yaml gives it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/p2pcache/bin/p2pcache", "serve"]
CMD []

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/p2pcache/p2pcache
LABEL org.opencontainers.image.title="p2pcache" \
      org.opencontainers.image.description="An encrypted libp2p cache of GitHub API responses that a CI fleet shares; the server node listens for peers on TCP 9100" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
