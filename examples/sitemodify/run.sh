#!/usr/bin/env bash
# `make run`: start Azurite (queue and table services) unless running, start
# the sitemodify worker (its log goes to bin/sitemodify-worker.log; the lines
# that matter are shown here), send it sample messages (one invalid, so it is
# retried and poisoned), walk through a background operation on the worker's
# HTTP API with curl (202 -> InProgress -> Succeeded, then a cancel), and start
# the web front. Ctrl-C stops what this script started.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
worker=$root/bin/sitemodify-worker
web=$root/bin/sitemodify-web
log=$root/bin/sitemodify-worker.log
api=http://127.0.0.1:7071/api/operations
fn=ProcessSiteModifyRequest
source ../azurite.sh
ensure_azurite "$root"

# summarize: the worker's log lines that matter, shortened (their routine
# fields dropped), as "worker: ...".
summarize() {
  local line f n msg fields
  while IFS= read -r line; do
    IFS=$'\t' read -r -a f <<<"$line"
    n=${#f[@]}
    ((n >= 3)) || continue
    msg=${f[n - 2]} fields=${f[n - 1]}
    case "$msg" in
      "invocation "* | "message moved to poison queue" | "canceling a running operation") ;;
      *) [[ ${f[1]} == WARN || ${f[1]} == ERROR ]] && [[ $msg != "HTTP listener started without keys"* ]] || continue ;;
    esac
    fields=$(sed -E 's/"(function|queue|invocationId|outcome|poisonMessageId)": "[^"]*"(, )?//g; s/, \}$/}/' <<<"$fields")
    echo "  worker: $msg $fields"
  done
}

# await_log PATTERN COUNT: wait (up to 30 s) for COUNT log lines matching PATTERN.
await_log() {
  for _ in $(seq 300); do
    (($(grep -c -E "$1" "$log" || true) >= $2)) && return 0
    kill -0 "$worker_pid" 2>/dev/null || { echo "run: the worker stopped; its log:" >&2; tail -n 20 "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "run: gave up waiting for the worker's log to show: $1" >&2
  exit 1
}

: >"$log"
"$worker" run --dev >"$log" 2>&1 &
worker_pid=$!
pids+=("$worker_pid")
await_log 'HTTP listener started' 1
await_log 'host started' 1
echo "run: worker up (log: bin/sitemodify-worker.log); operations API on $api (loopback only: no keys set)"

echo
echo "== 1. Queue messages: the samples, sent with \`sitemodify-worker send\`"
for f in samples/*.json; do
  "$worker" send --queue %SiteModifyQueue% --file "$f" --dev
done
# Three succeed; samples/invalid-http.json fails 3 attempts (maxDequeueCount)
# and moves to the poison queue.
await_log 'invocation succeeded' 3
await_log 'message moved to poison queue' 1
summarize <"$log"
echo "  (peek at the poison message: bin/sitemodify-worker peek --queue site-modify-requests-poison --settings examples/sitemodify/local.settings.json)"

if ! command -v curl >/dev/null; then
  echo "run: curl is not installed: skipping the walkthrough of the operations API"
else
  # show_cmd ARGS...: print a command as one could paste it.
  show_cmd() {
    local out='$' a
    for a in "$@"; do
      if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=" $a"; else out+=" '$a'"; fi
    done
    echo "$out"
  }
  # api_call CURL-ARGS...: run curl, print the command, the status and the
  # JSON (without the fields repeating the URL and the timestamps); sets
  # code, body, location and status (the record's statusName).
  tmp=$(mktemp -d)
  dirs+=("$tmp")
  api_call() {
    show_cmd curl -si "$@"
    code=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' "$@")
    body=$(<"$tmp/body")
    location=$(sed -n 's/^[Ll]ocation: *//p' "$tmp/headers" | tr -d '\r')
    status=$(sed -n 's/.*"statusName":"\([A-Za-z]*\)".*/\1/p' <<<"$body")
    echo "  HTTP $code${location:+, Location: $location}"
    echo "  $(sed -E 's/,"(backgroundOperationId|location|statusQueryGetUri|cancelUri|createdOn|lastUpdated|expiresOn)":"[^"]*"//g' <<<"$body")"
  }
  # get_until ID STATUS: GET the record every 0.2 s (up to 30 s), printing
  # each change of status, until it is STATUS.
  get_until() {
    local last='' shown
    for _ in $(seq 150); do
      shown=$( (api_call "$api/$1") 2>&1)
      local now
      now=$(sed -n 's/.*"statusName":"\([A-Za-z]*\)".*/\1/p' <<<"$shown")
      if [[ $now != "$last" ]]; then
        echo "$shown"
        last=$now
      fi
      [[ $now == "$2" ]] && return 0
      sleep 0.2
    done
    echo "run: operation $1 did not reach $2" >&2
    exit 1
  }
  json=(-H 'Content-Type: application/json')

  echo
  echo "== 2. A background operation on the worker's HTTP API (JSON shown without its repeated URLs and timestamps)"
  mark=$(wc -l <"$log")
  api_call -X POST "${json[@]}" -d '{"siteUrl":"https://contoso.sharepoint.com/sites/ops","requestorName":"Newcomer","workMs":2000}' "$api/$fn"
  [[ $code == 202 ]] || { echo "run: expected 202" >&2; exit 1; }
  id=${location##*/}
  get_until "$id" Succeeded
  done_id=$id
  await_log 'invocation succeeded' 4
  tail -n "+$((mark + 1))" "$log" | summarize

  echo
  echo "== 3. Cancel a long one (workMs 600000): DELETE while it runs"
  mark=$(wc -l <"$log")
  api_call -X POST "${json[@]}" -d '{"siteUrl":"https://contoso.sharepoint.com/sites/slow","requestorName":"Newcomer","workMs":600000}' "$api/$fn"
  id=${location##*/}
  get_until "$id" InProgress >/dev/null
  api_call -X DELETE "$api/$id"
  get_until "$id" Canceled
  await_log 'invocation operation-canceled' 1
  tail -n "+$((mark + 1))" "$log" | summarize

  echo
  echo "== Try it yourself:"
  echo "  curl -si -X POST -H 'Content-Type: application/json' -d '{\"siteUrl\":\"https://contoso.sharepoint.com/sites/you\",\"requestorName\":\"You\",\"workMs\":5000}' $api/$fn"
  echo "  curl -s $api/$done_id        # GET the Location the POST answered with"
  echo "  curl -si -X DELETE $api/<id>    # cancel: 202 Canceling, then 200 Canceled"
  echo "  curl -si -X POST -H 'Prefer: wait=10' -H 'Content-Type: application/json' -d '{\"siteUrl\":\"https://contoso.sharepoint.com/sites/you\",\"workMs\":2000}' $api/$fn"
  echo "                                  # 200 with the output when it is done within 10 s, else 202"
  echo "  curl -s '$api?function=$fn&status=Failed'"
fi

echo
if listening 8080; then
  echo "run: something listens on 127.0.0.1:8080 already: the web front is not started (bin/sitemodify-web -listen 127.0.0.1:8081)"
else
  "$web" >/dev/null &
  pids+=($!)
  for _ in $(seq 100); do listening 8080 && break; sleep 0.1; done
  listening 8080 || { echo "run: the web front did not start" >&2; exit 1; }
  echo "== The web front (the add-in's web app: its own process and client): http://127.0.0.1:8080"
fi
echo
echo "== The worker's dashboard (functions, invocations, the poison message with its Requeue button, operations):"
echo "   http://127.0.0.1:7071/    metrics: http://127.0.0.1:7071/metrics    health: $(curl -s -o /dev/null -w '/readyz %{http_code}' http://127.0.0.1:7071/readyz), /livez"
curl -s http://127.0.0.1:7071/metrics | grep -E '^jobhost_invocations_total\{' | sed 's/^/   /'
echo
echo "run: the worker's log follows, shortened (all of it: bin/sitemodify-worker.log). Ctrl-C to stop."
tail -n 0 -f "$log" | summarize &
pids+=("$(jobs -p %+)")
wait "$worker_pid"
