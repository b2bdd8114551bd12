#!/bin/sh
# Starts `stepwise serve` on all interfaces with the model named by STEPWISE_MODEL (a file on a
# mounted volume). exec: node becomes PID 1's process and receives SIGTERM itself, so a pod's
# termination drains in-flight requests (up to STEPWISE_DRAIN_TIMEOUT seconds) before it exits.
# Extra arguments (engine flags such as --max-num-seqs) pass through.
set -eu
if [ ! -f "$STEPWISE_MODEL" ]; then
  echo "stepwise: no model file at STEPWISE_MODEL=$STEPWISE_MODEL (mount one, or set the variable)" >&2
  exit 2
fi
exec node "$(dirname "$0")/bin/stepwise.js" serve --host 0.0.0.0 --port "${PORT:-8000}" \
  --model "$STEPWISE_MODEL" --drain-timeout "${STEPWISE_DRAIN_TIMEOUT:-30}" "$@"
