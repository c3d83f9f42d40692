#!/usr/bin/env bash
# Installs what the interop/crash test suite needs, idempotently and without prompts:
#   - kcat (Debian package; librdkafka comes with it),
#   - a Python venv at .venv/ with the pinned packages of tests/interop/requirements.txt,
#   - the pinned npm packages of tests/interop/js (kafkajs and its codecs) via `npm ci`.
# Safe to run repeatedly: each step is skipped when its result is already in place.
# Works as root on a fresh Debian machine (CI=true, no stdin); uses sudo for apt when not root.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo -n)
        else
            log "need root (or sudo) to apt-get install: $*"
            return 1
        fi
    fi
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -qq </dev/null
        apt_updated=1
    fi
    log "apt-get install $*"
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

# --- system packages -------------------------------------------------------------------------
if ! command -v kcat >/dev/null 2>&1; then
    apt_install kcat
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
python_bin="${PYTHON:-python3}"
if ! command -v "$python_bin" >/dev/null 2>&1; then
    apt_install python3 python3-venv
    python_bin=python3
fi

# --- Python venv -----------------------------------------------------------------------------
requirements="tests/interop/requirements.txt"
venv=".venv"
stamp="$venv/.caudal-requirements.sha256"
want_hash="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_hash" ]; then
    log "venv up to date ($venv)"
else
    if [ ! -x "$venv/bin/python" ]; then
        log "creating venv at $venv"
        if ! "$python_bin" -m venv "$venv" 2>/dev/null; then
            rm -rf "$venv"
            apt_install python3-venv
            "$python_bin" -m venv "$venv"
        fi
    fi
    log "installing $requirements"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$requirements" </dev/null
    echo "$want_hash" >"$stamp"
fi

# --- Node packages (kafkajs) ------------------------------------------------------------------
js_dir="tests/interop/js"
js_stamp="$js_dir/node_modules/.caudal-lock.sha256"
want_js_hash="$(sha256sum "$js_dir/package-lock.json" | cut -d' ' -f1)"
if [ -f "$js_stamp" ] && [ "$(cat "$js_stamp")" = "$want_js_hash" ]; then
    log "node_modules up to date ($js_dir)"
else
    log "npm ci in $js_dir"
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
    echo "$want_js_hash" >"$js_stamp"
fi

log "kcat: $(kcat -V 2>&1 | head -n1)"
log "python: $("$venv/bin/python" -c 'import confluent_kafka, kafka; print("confluent-kafka", confluent_kafka.version() if isinstance(confluent_kafka.version(), str) else confluent_kafka.version()[0], "librdkafka", confluent_kafka.libversion()[0], "kafka-python", kafka.__version__)')"
log "node: $(node --version), kafkajs $(cd "$js_dir" && node -p 'require("kafkajs/package.json").version')"
