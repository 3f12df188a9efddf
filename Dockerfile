# Stratus container image: a two-stage build.
#
#   builder  builds a wheel of stratus-lakehouse (the distribution; the command and package are
#            `stratus`) with the extras the image uses (sample-data, azure, postgres, redis) and
#            of every dependency into /wheels (`pip wheel`)
#   runtime  installs those wheels offline (`pip install --no-index --find-links /wheels
#            stratus-lakehouse[...]`) into a virtualenv, runs as an unprivileged user (10001)
#
# Build and run:
#
#   docker build -t stratus .
#   docker run --rm -p 8080:8080 -v stratus-data:/data stratus     # http://127.0.0.1:8080/health
#   docker compose up --build                                       # with Azurite, see compose.yaml
#
# Build arguments:
#
#   BASE_IMAGE  the Python 3.11 base image of both stages (default python:3.11-slim). Any Debian-like
#               image with `python3 -m venv` works, e.g. a locally imported image on a machine that
#               cannot pull: --build-arg BASE_IMAGE=localhost/stratus-base:local
#   WHEELHOUSE  a directory of the build context with prebuilt wheels (default: wheelhouse). If it
#               holds any *.whl, the builder installs from it only, with no network at all
#               (pip --no-index); otherwise it downloads from the package index. Pass
#               --build-arg WHEELHOUSE= to always use the index. Prepare the directory on the host
#               with the same Python minor version and CPU architecture as the image, e.g.:
#
#                   pip wheel --wheel-dir wheelhouse . "setuptools>=69" wheel
#
#               (setuptools and wheel are needed to build stratus itself). wheelhouse/ is in
#               .gitignore but deliberately not in .dockerignore.
#
# Runtime settings are the usual STRATUS_* / AZURE_STORAGE_* environment variables. The image sets
# STRATUS_HOME=/data (a volume owned by uid 10001), STRATUS_HOST=0.0.0.0 and STRATUS_PORT=8080.
# The default command loads the bundled sample weather when the lakehouse is empty, then serves.
#
# The runtime stage mounts /wheels from the builder for one RUN instead of copying it, so the
# wheels do not stay in an image layer (~250 MB). This needs BuildKit (the default builder since
# Docker 23) or Buildah/Podman; the legacy `DOCKER_BUILDKIT=0` builder cannot build this file.

ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ARG WHEELHOUSE=wheelhouse

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /build
COPY . .

RUN python3 -m venv /opt/build-venv \
    && if [ -n "${WHEELHOUSE}" ] \
        && [ -n "$(find "${WHEELHOUSE}" -maxdepth 1 -name '*.whl' -print -quit 2>/dev/null)" ]; then \
        echo "stratus: building offline from the prebuilt wheels in ${WHEELHOUSE}/"; \
        /opt/build-venv/bin/pip wheel --no-cache-dir --no-index --find-links "${WHEELHOUSE}" \
            --wheel-dir /wheels ".[sample-data,azure,postgres,redis]" ; \
    else \
        echo "stratus: no wheels in '${WHEELHOUSE}', downloading from the package index"; \
        /opt/build-venv/bin/pip wheel --no-cache-dir --wheel-dir /wheels \
            ".[sample-data,azure,postgres,redis]" ; \
    fi \
    && ls /wheels/stratus_lakehouse-*.whl \
    && sha256sum /wheels/*.whl > /wheels/SHA256SUMS

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="stratus-lakehouse" \
      org.opencontainers.image.description="A self-hostable, governed weather-data lakehouse behind a Flask API" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/stratus \
    PATH=/opt/stratus/bin:$PATH \
    STRATUS_HOME=/data \
    STRATUS_HOST=0.0.0.0 \
    STRATUS_PORT=8080

# A fixed uid/gid (10001) so volume ownership is predictable across rebuilds and hosts. Base
# images without the passwd package (e.g. a debootstrap "minbase") have no useradd; the accounts
# are then written directly.
RUN if command -v useradd >/dev/null 2>&1; then \
        groupadd --system --gid 10001 stratus \
        && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin stratus; \
    else \
        echo "stratus:x:10001:" >> /etc/group \
        && echo "stratus:x:10001:10001:stratus:/data:/usr/sbin/nologin" >> /etc/passwd; \
    fi \
    && mkdir -p /data \
    && chown 10001:10001 /data

# Only the wheels built above: no index, no network. The checksum list is copied (not just
# mounted) on purpose: Buildah/Podman do not key their layer cache on the contents of a
# `--mount=from=` source, so without this COPY a rebuild could reuse a stale install. It also
# records in the image exactly which wheels were installed, and the install verifies them.
COPY --from=builder /wheels/SHA256SUMS /usr/local/share/stratus/wheels.sha256
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    sha256sum --check --quiet /usr/local/share/stratus/wheels.sha256 \
    && python3 -m venv "${VIRTUAL_ENV}" \
    && "${VIRTUAL_ENV}/bin/pip" install --no-cache-dir --no-index --find-links /wheels \
        "stratus-lakehouse[sample-data,azure,postgres,redis]" \
    && "${VIRTUAL_ENV}/bin/stratus" --help > /dev/null

WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080

# No curl in slim images: probe /health with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/health' % os.environ.get('STRATUS_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

CMD ["stratus", "serve", "--with-sample-data"]
