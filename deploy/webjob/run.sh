#!/bin/sh
# The App Service WebJobs runner starts this script from the job's folder
# (a copy of the zip's contents) and starts it again whenever it exits.
#
# exec replaces the shell with the host, so the host is the process the
# runner signals and kills; the host itself watches WEBJOBS_SHUTDOWN_FILE,
# which the runner creates to stop the job, and drains as on SIGTERM.
# Arguments are passed on to `jobhost run` (e.g. --dev).
set -e
cd "$(dirname "$0")"
# Extracting the zip on App Service does not keep the executable bit.
[ -x ./jobhost ] || chmod +x ./jobhost
exec ./jobhost run "$@"
