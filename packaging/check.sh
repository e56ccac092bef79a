#!/usr/bin/env bash
# Packaging check: builds the release binary with the Dockerfile's build command, checks the
# container configuration and, where the tools exist, the systemd unit (systemd-analyze) and the
# image itself (docker: build, start, wait for the health check). CI runs it only when a docker
# daemon answers (see .ci/run); the release build alone takes minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The Dockerfile's build stage, outside a container.
cargo build --release --locked --bin tokengate
bin="${CARGO_TARGET_DIR:-target}/release/tokengate"
"$bin" --version
"$bin" check-config --config packaging/docker.toml

if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart's binary to exist: point a copy of the unit at the one just built.
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  sed "s|/usr/local/bin/tokengate|$(realpath "$bin")|" packaging/tokengate.service >"$dir/tokengate.service"
  systemd-analyze verify "$dir/tokengate.service"
  echo "systemd unit: ok"
else
  echo "systemd-analyze not found: unit not checked"
fi

if ! docker info >/dev/null 2>&1; then
  echo "no docker daemon: image not built"
  exit 0
fi
docker build -t tokengate:check .
name="tokengate-check-$$"
# No cluster here: readiness is told not to wait for one, so the check proves the gateway serves.
config="$(mktemp)"
printf '[server]\nlisten = "0.0.0.0:8080"\ndata_dir = "/data"\n[admin]\nready_requires_upstream = false\n' >"$config"
chmod 644 "$config"
docker run -d --name "$name" -e ELASTIC_PASSWORD=check-password \
  -v "$config:/etc/tokengate/check.toml:ro" -e TOKENGATE_CONFIG=/etc/tokengate/check.toml \
  tokengate:check --upstream http://127.0.0.1:9 >/dev/null
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; rm -f "$config"; }
trap cleanup EXIT
# The health check runs every 10s after a 10s start period; give it a bounded minute.
for _ in $(seq 60); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$name")
  [[ $health == healthy ]] && break
  [[ $health == unhealthy ]] && break
  sleep 1
done
echo "container health: $health"
docker exec "$name" tokengate users list
[[ $health == healthy ]]
