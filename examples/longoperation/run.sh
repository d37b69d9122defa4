#!/usr/bin/env bash
# `make run-longoperation`: start Azurite (queues and tables) unless running,
# then run the bot demo: a bot submits long operations to the host's
# operations API (127.0.0.1:7072) with its callback URL, answers at once,
# polls, waits (Prefer: wait), cancels one, and verifies the signed
# completion callbacks.
set -euo pipefail
cd "$(dirname "$0")"
source ../azurite.sh
ensure_azurite "$(cd ../.. && pwd)"
# In the background, so that Ctrl-C (which reaches this script) stops it.
../../bin/longoperation-demo &
pids+=($!)
wait $!
