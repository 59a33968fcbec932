#!/usr/bin/env bash
# `make container-test`: build the queuectl image (Dockerfile) for real and run it on one queue
# shared by three containers: the first enqueues, the second drains it (`worker run
# --until-empty`), the third reads `status`, `list` and `logs`. No image registry is needed: the
# base image is made from Debian packages with mmdebstrap and imported into podman.
#
# Needs root and Debian (bookworm) apt sources: it INSTALLS podman, mmdebstrap and runc with
# apt-get when they are missing. pip inside the build uses the host's network (--network
# host), $PIP_INDEX_URL / $PIP_EXTRA_INDEX_URL when set, and the host's CA bundle as the build
# secret pip_cert (so an index behind a TLS-inspecting proxy works).
#
# The run's volume and containers are removed at the end; the images stay as a cache
# (CLEAN_IMAGES=1 removes them too). Settings: IMAGE, BASE_IMAGE, SUITE, MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/queuectl:latest}
BASE_IMAGE=${BASE_IMAGE:-localhost/queuectl-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
RUN_ID=qctest-$$
VOLUME=$RUN_ID-data

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'container-test: FAILED: %s\n' "$*" >&2; exit 1; }

# --- 1. the tools -------------------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v runc >/dev/null || missing+=(runc)
if ((${#missing[@]})); then
    step "installing ${missing[*]} (apt-get)"
    [ "$(id -u)" = 0 ] || fail "run as root to install ${missing[*]}, or install them first"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" uidmap
fi
podman --version

# --- 2. the base image, from Debian packages ----------------------------------------------
if ! podman image exists "$BASE_IMAGE"; then
    step "building $BASE_IMAGE with mmdebstrap ($SUITE, minbase + python3)"
    tmp=$(mktemp -d)
    mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$SUITE" "$tmp/base.tar" "$MIRROR"
    podman import "$tmp/base.tar" "$BASE_IMAGE"
    rm -rf "$tmp"
fi

# --- 3. what this host needs to run a container --------------------------------------------
# In a sandbox (no CAP_SYS_RESOURCE, hybrid cgroups) podman's defaults can fail: its default
# rlimits cannot be set and crun refuses hybrid cgroups. Take the first set that runs.
nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
limits="--ulimit nofile=$nofile:$nofile --ulimit nproc=4096:4096"
ENGINE_OPTS=()
for candidate in "" "$limits" "--runtime runc $limits"; do
    # shellcheck disable=SC2086
    if podman run --rm --network none $candidate "$BASE_IMAGE" true 2>/dev/null; then
        read -r -a ENGINE_OPTS <<<"$candidate"
        break
    fi
    candidate=unusable
done
[ "${candidate:-}" != unusable ] || fail "podman cannot run a container here: $(
    podman run --rm --network none "$BASE_IMAGE" true 2>&1 | tail -1)"
echo "engine options: ${ENGINE_OPTS[*]:-(none)}"

# --- 4. the image -------------------------------------------------------------------------
step "building $IMAGE (Dockerfile, BASE=$BASE_IMAGE)"
build_opts=(--network host --build-arg "BASE=$BASE_IMAGE")
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL; do
    [ -n "${!var:-}" ] && build_opts+=(--build-arg "$var=${!var}")
done
cert=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[ -s "$cert" ] && build_opts+=(--secret "id=pip_cert,src=$cert")
if ! podman build "${ENGINE_OPTS[@]}" "${build_opts[@]}" -t "$IMAGE" . 2>&1 \
    | { grep -v -e '^ *Downloading ' -e '━' || true; }; then
    fail "podman build"
fi
[ "$(podman image inspect "$IMAGE" --format '{{.Config.User}}')" = queuectl ] \
    || fail "the image does not run as the user queuectl"

# --- 5. three containers, one queue -------------------------------------------------------
cleanup() {
    podman rm -f --ignore "$RUN_ID-enqueue" "$RUN_ID-worker" "$RUN_ID-status" >/dev/null 2>&1 || true
    podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    if [ "${CLEAN_IMAGES:-0}" = 1 ]; then
        podman rmi -f "$IMAGE" "$BASE_IMAGE" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
podman volume create "$VOLUME" >/dev/null
# Named --rm containers; each mounts the volume on /data (QUEUECTL_HOME). A new volume starts
# as a copy of the image's /data: owned by queuectl (uid 10001), mode 0700.
qc() { # qc NAME [PODMAN-RUN-OPTION...] -- ARGS...: a container of its own, as the user queuectl
    local name=$1 opts=(); shift
    while [ "$1" != -- ]; do opts+=("$1"); shift; done; shift
    podman run --rm --name "$RUN_ID-$name" --network none "${ENGINE_OPTS[@]}" "${opts[@]}" \
        -v "$VOLUME:/data" "$IMAGE" "$@"
}

step "container 1: enqueue"
qc enqueue --entrypoint sh -- -c '
    queuectl enqueue --id hello "echo from container" &&
    queuectl enqueue --id host "echo ran on \$(hostname) as \$(id -un)" &&
    queuectl enqueue --id env --env GREETING=hi "echo \$GREETING from a job env" &&
    queuectl enqueue "{\"id\":\"fails\",\"command\":\"exit 3\",\"max_retries\":0}" &&
    queuectl status'
step "container 2: worker run --until-empty"
qc worker -- worker run --count 2 --until-empty --poll-interval 100
step "container 3: status, list, logs"
qc status --entrypoint sh -- -c 'queuectl status; echo; queuectl list; echo; for j in hello host env; do
    printf "%s: " "$j"; queuectl logs "$j"; done; ls -la /data'

step "checks"
counts=$(podman run --rm --network none "${ENGINE_OPTS[@]}" -v "$VOLUME:/data" "$IMAGE" status --json)
python3 - "$counts" <<'PY' || fail "unexpected status"
import json, sys
status = json.loads(sys.argv[1])
counts = status.get("counts", status)
print("counts:", {k: v for k, v in counts.items() if isinstance(v, int)})
assert counts["completed"] == 3 and counts["dead"] == 1, counts
assert counts["pending"] == 0 and counts["processing"] == 0, counts
PY
out=$(podman run --rm --network none "${ENGINE_OPTS[@]}" -v "$VOLUME:/data" "$IMAGE" logs hello)
[ "$out" = "from container" ] || fail "logs hello: $out"
echo "container-test: OK (3 completed, 1 dead as expected; image $IMAGE)"
