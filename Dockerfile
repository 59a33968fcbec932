# queuectl in a container: the CLI as ENTRYPOINT, the queue home on the /data volume.
#
#   docker build -t queuectl .                       # or: podman build -t queuectl .
#   docker run --rm -v queuectl-data:/data queuectl enqueue "echo hello"
#   docker run --rm -v queuectl-data:/data queuectl worker run --until-empty
#   docker run --rm -v queuectl-data:/data queuectl status
#
# BASE is any Debian bookworm image; without python3 it gets python3 and python3-venv from
# apt. `make container-test` builds one from Debian packages with mmdebstrap (no registry) and
# passes it here as --build-arg BASE=localhost/queuectl-base.
#
# pip reads PIP_INDEX_URL / PIP_EXTRA_INDEX_URL when given as build args, and a CA bundle from
# the optional build secret `pip_cert` (for an index behind a TLS-inspecting proxy):
#   podman build --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt ...
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS python
RUN if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

FROM python AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python3 -m venv /opt/queuectl \
    && /opt/queuectl/bin/pip install '/src[postgres]' \
    && /opt/queuectl/bin/python -m compileall -q /opt/queuectl \
    && /opt/queuectl/bin/queuectl --version

FROM python
COPY --from=build /opt/queuectl /opt/queuectl
# A folder of the queue's user with mode 0700: queuectl refuses a queue in a folder others can
# write. A new named volume mounted on /data starts as a copy of it (owner and mode included).
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin queuectl \
    && install -d -o queuectl -g queuectl -m 0700 /data
ENV PATH=/opt/queuectl/bin:$PATH \
    QUEUECTL_HOME=/data \
    PYTHONUNBUFFERED=1
USER queuectl
WORKDIR /data
VOLUME /data
ENTRYPOINT ["queuectl"]
CMD ["--help"]
