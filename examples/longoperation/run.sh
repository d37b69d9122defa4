#!/usr/bin/env bash
# `make run-longoperation`: start Azurite unless one is running, then run the
# long-operation demo (a caller's callback endpoint, two queued operations,
# the host, and the completion callbacks it posts).
set -euo pipefail
cd "$(dirname "$0")"
source ../azurite.sh
ensure_azurite "$(cd ../.. && pwd)"
../../bin/longoperation-demo
