#!/usr/bin/env bash
# Usage: scripts/compose.sh up|down|ps|logs [args...]
# The compose stack for a machine with a normal Docker: builds the project's image,
# then runs `docker compose` (the v2 plugin) or Debian's `docker-compose` (1.29) on the
# core and observability layers (COMPOSE_LAYERS adds more: "chaos load").
set -euo pipefail
cd "$(dirname "$0")/.."
env_file=compose/.env
files=(-f compose/compose.yaml -f compose/compose.observability.yaml)
for layer in ${COMPOSE_LAYERS:-}; do files+=(-f "compose/compose.$layer.yaml"); done
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose); v2=1
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose); v2=0
else
  echo "no docker compose: install the Docker Compose plugin or Debian's docker-compose" >&2
  exit 1
fi
image=$(sed -n 's/^ASTRA_IMAGE=//p' "$env_file")
base=$(sed -n 's/^BASE_IMAGE=//p' "$env_file")
command=${1:-up}; shift || true
case "$command" in
  up)
    DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-1} docker build -f compose/Dockerfile \
      --build-arg "BASE_IMAGE=$base" -t "$image" .
    if [ "$v2" = 1 ]; then
      "${compose[@]}" --env-file "$env_file" "${files[@]}" up -d --wait "$@"
    else  # 1.29 has no --wait: poll the health of every container it started
      "${compose[@]}" --env-file "$env_file" "${files[@]}" up -d "$@"
      for _ in $(seq 1 120); do
        pending=$("${compose[@]}" --env-file "$env_file" "${files[@]}" ps -q \
          | xargs docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' \
          | grep -vE ' (healthy|exited)$' || true)
        [ -z "$pending" ] && break
        sleep 2
      done
      [ -z "$pending" ] || { echo "not healthy yet: $pending" >&2; exit 1; }
    fi
    echo "AstraTrade in containers: gateway http://127.0.0.1:8000, Prometheus :9090, Grafana :3000, Jaeger :16686"
    ;;
  *)
    "${compose[@]}" --env-file "$env_file" "${files[@]}" "$command" "$@"
    ;;
esac
