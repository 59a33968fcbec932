#!/usr/bin/env bash
# A real end-to-end run on a fresh SQLite queue in ./.demo: jobs that succeed, one that fails
# into the dead letter queue after its retries, jobs that wait for others (one runs after its
# parents, one is cancelled by its failed parent), a worker pool that drains the queue.
set -euo pipefail
export QUEUECTL_HOME="$PWD/.demo"
unset QUEUECTL_DB
rm -rf "$QUEUECTL_HOME"

step() { printf '\n\033[1m$ queuectl %s\033[0m\n' "$*"; queuectl "$@"; }

step config set backoff_base 1.5
step enqueue '{"id":"hello","command":"echo hello from queuectl"}'
step enqueue '{"id":"primes","command":"python3 -c \"print(sum(p for p in range(2, 30000) if all(p % d for d in range(2, int(p**0.5) + 1))))\"","priority":5}'
step enqueue --id sleepy --timeout 10 "sleep 1 && echo woke up"
step enqueue --id sweep-lr-0.1 -- python3 -c "print('loss', round(1 / 0.1 ** 0.5, 3))"
step enqueue '{"id":"flaky","command":"echo trying >&2; exit 3","max_retries":2}'
step enqueue --id report --after hello,primes -- sh -c 'echo "report after hello and primes"'
step enqueue --id after-flaky --after flaky "echo never runs: flaky ends dead"
step list
step worker run --count 3 --until-empty
step status
step list
step dlq list
step show flaky
step show after-flaky
step logs primes
step metrics
printf '\nThe queue is in %s; try: QUEUECTL_HOME=%s %s/queuectl dlq retry flaky\n' \
  "$QUEUECTL_HOME" "$QUEUECTL_HOME" "$(dirname "$(command -v queuectl)")"
