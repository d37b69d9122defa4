#!/usr/bin/env bash
# `make run-longoperation`: start Azurite unless one is running, then run the
# long-operation demo (a caller's callback endpoint, two queued operations,
# the host, and the completion callbacks it posts).
set -euo pipefail
cd "$(dirname "$0")"
pids=()
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT
source ../azurite.sh
ensure_azurite "$(cd ../.. && pwd)"
../../bin/longoperation-demo
