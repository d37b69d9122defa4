#!/usr/bin/env bash
# Builds the zip App Service takes for a continuous WebJob on Linux:
#
#   deploy/webjob/build.sh MAIN ZIP [HOST_JSON]
#   deploy/webjob/build.sh ./examples/sitemodify/worker bin/sitemodify-webjob.zip examples/sitemodify/host.json
#
# MAIN is the main package of a worker that calls cli.Main() (cmd/jobhost
# has no functions), ZIP the zip to write, HOST_JSON the host.json to ship
# (default: none, the host's defaults). Run it from the module root. The
# zip holds, at its root: run.sh, settings.job, the binary (jobhost) and
# host.json. GOARCH (default amd64) picks the instance's architecture.
#
# The binary is built exactly as the Dockerfile builds it: static, paths
# trimmed, stripped, version and commit stamped from git, tzdata embedded.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 MAIN ZIP [HOST_JSON]" >&2
  exit 2
fi
main=$1 zip_out=$2 host_json=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
command -v zip >/dev/null || { echo "$0: zip is not installed (apt-get install zip)" >&2; exit 1; }
if [ -n "$host_json" ] && [ ! -f "$host_json" ]; then
  echo "$0: $host_json: no such file" >&2
  exit 2
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
CGO_ENABLED=0 GOOS=linux GOARCH="${GOARCH:-amd64}" ${GO:-go} build -trimpath -buildvcs=auto -tags timetzdata \
  -ldflags="-s -w" -o "$stage/jobhost" "$main"
cp "$here/run.sh" "$here/settings.job" "$stage/"
chmod 0755 "$stage/run.sh" "$stage/jobhost"
if [ -n "$host_json" ]; then
  cp "$host_json" "$stage/host.json"
fi

mkdir -p "$(dirname "$zip_out")"
zip_abs=$(cd "$(dirname "$zip_out")" && pwd)/$(basename "$zip_out")
rm -f "$zip_abs"
(cd "$stage" && zip -q -X "$zip_abs" run.sh settings.job jobhost $( [ -n "$host_json" ] && echo host.json ))
echo "$zip_out: continuous WebJob ($main)"
