#!/usr/bin/env bash
# `make run`: start Azurite on 127.0.0.1:10001 unless something listens there,
# start the sitemodify worker, and send it sample requests (one invalid).
# Ctrl-C stops what this script started.
set -euo pipefail
cd "$(dirname "$0")"
root=../..
worker=$root/bin/sitemodify-worker
source ../azurite.sh
ensure_azurite "$(cd "$root" && pwd)"

"$worker" run --dev &
pids+=($!)

for f in samples/*.json; do
  "$worker" send --queue %SiteModifyQueue% --file "$f" --dev
done
echo "run: sent $(ls samples/*.json | wc -l) requests; each success writes a result to site-modify-results; samples/invalid-http.json fails 3 attempts (maxDequeueCount in host.json), then moves to site-modify-requests-poison."
echo "run: peek at it with: bin/sitemodify-worker peek --queue site-modify-requests-poison --settings examples/sitemodify/local.settings.json"
echo "run: Ctrl-C to stop."
wait "${pids[-1]}"
