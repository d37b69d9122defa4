# Sourced by the examples' run scripts: ensure_azurite starts Azurite's queue
# service on 127.0.0.1:10001 unless something listens there. Every pid added
# to pids is stopped when the script ends or is interrupted (Ctrl-C).
pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

listening() { (exec 3<>/dev/tcp/127.0.0.1/10001) 2>/dev/null; }

ensure_azurite() {
  local root=$1
  if listening; then
    echo "run: something already listens on 127.0.0.1:10001; using it as Azurite"
    return
  fi
  echo "run: starting Azurite (queue service) on 127.0.0.1:10001, in memory"
  local dir
  dir=$(mktemp -d)
  (cd "$dir" && exec "$root/node_modules/.bin/azurite-queue" --queueHost 127.0.0.1 --queuePort 10001 \
    --inMemoryPersistence --disableTelemetry --silent >/dev/null) &
  pids+=($!)
  for _ in $(seq 100); do listening && break; sleep 0.1; done
  listening || { echo "run: Azurite did not start" >&2; exit 1; }
}
