# Sourced by the examples' run scripts. ensure_azurite ROOT starts Azurite's
# queue service on 127.0.0.1:10001 and its table service on 127.0.0.1:10002
# (in memory), each unless something listens on its port already, so that
# UseDevelopmentStorage=true reaches both.
#
# Background jobs run in process groups of their own (set -m), so Ctrl-C
# reaches only this script, which then stops every job whose pid (its group
# leader's) is in pids, the last started first: SIGINT (the hosts stop
# gracefully on the first signal, a second ends them at once), SIGTERM when
# it is still there after 5 s (it was started with SIGINT ignored), SIGKILL
# after 10 s.
set -m
pids=()
dirs=() # Azurite's working directories, removed at the end
cleaned=
cleanup() {
  [[ -n $cleaned ]] && return
  cleaned=1
  trap '' INT TERM # a second signal must not cut the cleanup short
  set +m # no job notices
  # Each pid leads its job's process group: signal the group (a pipeline's
  # every process), or the process when it leads none.
  signal() { kill "-$1" -- "-$2" 2>/dev/null || kill "-$1" "$2" 2>/dev/null; }
  stop_job() {
    local sig
    for sig in INT TERM KILL; do
      signal 0 "$1" || return 0
      signal "$sig" "$1" || true
      [[ $sig == KILL ]] && return 0
      for _ in $(seq 50); do # up to 5 s
        signal 0 "$1" || return 0
        sleep 0.1
      done
    done
  }
  # The last started first: the hosts finish their storage calls before
  # Azurite goes.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_job "${pids[i]}"; done
  wait 2>/dev/null || true
  [[ ${#dirs[@]} -eq 0 ]] || rm -rf "${dirs[@]}"
}
trap cleanup EXIT
trap 'echo; echo "run: stopping"; cleanup; exit 0' INT TERM

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_azurite_service NAME PORT ROOT ARGS...: node_modules/.bin/azurite-NAME
# on 127.0.0.1:PORT, in memory, unless something listens there.
start_azurite_service() {
  local name=$1 port=$2 root=$3
  shift 3
  if listening "$port"; then
    echo "run: something already listens on 127.0.0.1:$port; using it as Azurite's $name service"
    return
  fi
  echo "run: starting Azurite ($name service) on 127.0.0.1:$port, in memory"
  local dir
  dir=$(mktemp -d)
  dirs+=("$dir")
  (cd "$dir" && exec "$root/node_modules/.bin/azurite-$name" "$@" \
    --inMemoryPersistence --disableTelemetry --silent >/dev/null) &
  pids+=($!)
  for _ in $(seq 100); do listening "$port" && break; sleep 0.1; done
  listening "$port" || { echo "run: Azurite's $name service did not start on 127.0.0.1:$port" >&2; exit 1; }
}

ensure_azurite() {
  local root=$1
  start_azurite_service queue 10001 "$root" --queueHost 127.0.0.1 --queuePort 10001
  start_azurite_service table 10002 "$root" --tableHost 127.0.0.1 --tablePort 10002
}
