#!/usr/bin/env bash
# Prepare this machine for tests/test_container_run.py (and for building the image offline):
#
#   1. podman, buildah, runc and mmdebstrap (apt-get install, only if a command is missing);
#   2. the base image localhost/stratus-base:local, only if podman does not have it yet: a Debian
#      bookworm "minbase" with python3, python3-venv and ca-certificates, made with mmdebstrap from
#      the Debian mirror this machine's apt uses, then `podman import` (no registry pull);
#   3. wheelhouse/ (gitignored, part of the build context; see the Dockerfile's WHEELHOUSE): a
#      wheel of every runtime dependency, plus the build backend, for the base image's Python,
#      built on the host with pip (`pip install` inside a build cannot verify certificates here).
#      The versions are those installed in .venv (the environment the suite tests), as pip
#      constraints. Rebuilt only when pyproject.toml, .venv's versions or the Python change.
#
# Idempotent: a second run with nothing changed does nothing and takes about a second.
#
# Environment:
#   STRATUS_BASE_IMAGE   the base image name      (default localhost/stratus-base:local)
#   STRATUS_WHEELHOUSE   the wheelhouse directory (default <repo>/wheelhouse)
#   DEBIAN_SUITE         the base image's suite   (default bookworm: Python 3.11)
#   PYTHON               the host interpreter for `pip wheel` (default: .venv's, if its minor
#                        version is the image's, else python3.<minor>)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${STRATUS_BASE_IMAGE:-localhost/stratus-base:local}"
WHEELHOUSE="${STRATUS_WHEELHOUSE:-$ROOT/wheelhouse}"
SUITE="${DEBIAN_SUITE:-bookworm}"
SOURCES="${DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
# The settings podman needs on these machines (see containers-here.md): crun fails on the hybrid
# cgroups, the default rlimits are refused.
RUN_FLAGS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=16384:16384)

say() { printf 'container-prereqs: %s\n' "$*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

# Checks under a shared lock, changes under an exclusive one (then checked again: another run
# may have just made them). tests/container_support.py holds the lock shared while it builds, so
# the wheelhouse is never replaced under a running build.
mkdir -p "$ROOT/.tools"
exec 9>>"$ROOT/.tools/container-prereqs.lock"
flock --shared 9
exclusive() { flock --exclusive 9; }

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "'$*' needs root (not root, and no password-less sudo)"
    fi
}

# ---- 1. tools -------------------------------------------------------------------------------
missing=()
for tool in podman:podman buildah:buildah runc:runc mmdebstrap:mmdebstrap; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    as_root apt-get update -qq || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman buildah runc mmdebstrap uidmap slirp4netns fuse-overlayfs \
        || die "apt-get install ${missing[*]} failed"
fi
podman --version >/dev/null 2>&1 || die "podman is installed but does not run: $(podman --version 2>&1)"

# ---- 2. base image --------------------------------------------------------------------------
# sources.list lines for the suite and its -updates/-security companions, from the deb822 file
# apt uses here (mmdebstrap takes full sources.list lines as mirrors).
mirror_lines() {
    python3 - "$SOURCES" "$SUITE" <<'EOF'
import sys

path, suite = sys.argv[1], sys.argv[2]
wanted = {suite, f"{suite}-updates", f"{suite}-security"}
try:
    text = open(path, encoding="utf-8").read()
except OSError:
    text = ""
for stanza in text.split("\n\n"):
    fields = {}
    for line in stanza.splitlines():
        if line.strip().startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.split()
    if "deb" not in fields.get("types", []) or fields.get("enabled", ["yes"])[0] == "no":
        continue
    for uri in fields.get("uris", []):
        for s in fields.get("suites", []):
            if s in wanted:
                print(f"deb {uri} {s} {' '.join(fields.get('components', ['main']))}")
EOF
}

if podman image exists "$BASE_IMAGE" || { exclusive && podman image exists "$BASE_IMAGE"; }; then
    say "base image $BASE_IMAGE: present"
else
    mapfile -t mirrors < <(mirror_lines)
    [ "${#mirrors[@]}" -gt 0 ] || mirrors=("deb http://deb.debian.org/debian $SUITE main")
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    say "building $BASE_IMAGE with mmdebstrap from: ${mirrors[*]}"
    start=$SECONDS
    as_root mmdebstrap --quiet --variant=minbase \
        --include=python3,python3-venv,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        "$SUITE" "$tmp/base.tar" "${mirrors[@]}" \
        || die "mmdebstrap failed (is the Debian mirror reachable?)"
    # An imported tarball has no image config: give it the usual PATH (the Dockerfile's
    # ENV PATH=/opt/stratus/bin:$PATH extends it) and a shell as its command.
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$tmp/base.tar" "$BASE_IMAGE" >/dev/null || die "podman import failed"
    rm -rf "$tmp"
    trap - EXIT
    say "base image $BASE_IMAGE: built in $((SECONDS - start)) s"
fi

# ---- 3. wheelhouse --------------------------------------------------------------------------
# The base image's Python version, probed once per image id (a container run costs seconds).
base_id="$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")"
probe="$ROOT/.tools/stratus-base.python"
image_python=""
if [ -f "$probe" ] && [ "$(cut -d' ' -f1 "$probe")" = "$base_id" ]; then
    image_python="$(cut -d' ' -f2 "$probe")"
fi
if [ -z "$image_python" ]; then
    image_python="$(podman run --rm "${RUN_FLAGS[@]}" --network none "$BASE_IMAGE" \
        python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
        || die "cannot run a container from $BASE_IMAGE (podman run ${RUN_FLAGS[*]} failed)"
    printf '%s %s\n' "$base_id" "$image_python" >"$probe"
fi

if [ -z "${PYTHON:-}" ]; then
    for candidate in "$ROOT/.venv/bin/python" "python$image_python"; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$image_python" ]; then
            PYTHON="$candidate"
            break
        fi
    done
fi
[ -n "${PYTHON:-}" ] || die "no host Python $image_python to build the image's wheels with (set PYTHON)"
host_python="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$host_python" = "$image_python" ] \
    || die "PYTHON=$PYTHON is $host_python, the image's Python is $image_python"

# What the image needs: the project's dependencies, those of the extras the image installs, and
# its build backend (the builder stage runs `pip wheel --no-index .[...]`, which installs the
# build requirements from the wheelhouse).
requirements="$("$PYTHON" - "$ROOT/pyproject.toml" <<'EOF'
import sys
import tomllib

with open(sys.argv[1], "rb") as fh:
    data = tomllib.load(fh)
extras = data["project"]["optional-dependencies"]
image_extras = [r for e in ("sample-data", "azure", "postgres", "redis") for r in extras[e]]
for req in [*data["project"]["dependencies"], *image_extras, *data["build-system"]["requires"]]:
    print(req)
EOF
)"
key="$(printf '%s\n--\n%s %s\n' "$requirements" "$image_python" "$(uname -m)" \
    | sha256sum | cut -d' ' -f1)"
stamp="$WHEELHOUSE/.stamp"

# The wheels whose version differs from the one installed in .venv (the versions the suite
# tests with); packages .venv does not have, and the build tools, are not compared.
venv_drift() {
    [ -x "$ROOT/.venv/bin/python" ] || return 0
    "$ROOT/.venv/bin/python" - "$WHEELHOUSE" <<'EOF'
import re
import sys
from importlib import metadata
from pathlib import Path


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


installed = {norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
for wheel in Path(sys.argv[1]).glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    have = installed.get(norm(name))
    if have is not None and norm(name) not in {"setuptools", "wheel", "pip"} and have != version:
        print(f"{name} {version} (.venv has {have})")
EOF
}

wheelhouse_current() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] \
        && compgen -G "$WHEELHOUSE/*.whl" >/dev/null || return 1
    drift="$(venv_drift)"
    if [ -n "$drift" ]; then
        say "wheelhouse $WHEELHOUSE: versions differ from .venv's: $(echo "$drift" | tr '\n' ' ')"
        return 1
    fi
}

if wheelhouse_current || { exclusive && wheelhouse_current; }; then
    say "wheelhouse $WHEELHOUSE: up to date ($(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels)"
    exit 0
fi

# The versions the suite tests with, where .venv has them (not the editable project itself).
constraints=""
if [ -x "$ROOT/.venv/bin/python" ]; then
    constraints="$("$ROOT/.venv/bin/python" -m pip freeze --exclude-editable 2>/dev/null \
        | grep -E '^[A-Za-z0-9_.-]+==' || true)"
fi

say "building the wheelhouse $WHEELHOUSE for Python $image_python with $PYTHON"
start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '%s\n' "$requirements" >"$work/requirements.txt"
printf '%s\n' "$constraints" >"$work/constraints.txt"
rm -rf "$WHEELHOUSE.new"
mkdir -p "$WHEELHOUSE.new"
# PIP_FIND_LINKS may point at a machine-wide wheel cache; the resolution must come from the index
# and the constraints only.
if ! PIP_FIND_LINKS="" "$PYTHON" -m pip wheel --quiet --disable-pip-version-check \
    --wheel-dir "$WHEELHOUSE.new" \
    --requirement "$work/requirements.txt" \
    --constraint "$work/constraints.txt" 2>"$work/pip.err"; then
    grep -v 'is ignored: it is neither a file nor a directory' "$work/pip.err" >&2 || true
    die "pip wheel failed"
fi
printf '%s\n' "$key" >"$WHEELHOUSE.new/.stamp"
rm -rf "$WHEELHOUSE"
mv "$WHEELHOUSE.new" "$WHEELHOUSE"
say "wheelhouse $WHEELHOUSE: $(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels," \
    "$(du -sh "$WHEELHOUSE" | cut -f1), built in $((SECONDS - start)) s"
