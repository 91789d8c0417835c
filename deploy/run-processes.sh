#!/usr/bin/env sh
# Print the Procfile processes `make run` hands to honcho: all of them, except the sandbox when no
# source in the sources file points at it. A sandbox with nothing to serve exits at once, and honcho
# stops every process when one exits. Needs `receiver` on PATH, and RECEIVER_SOURCES_FILE and
# SANDBOX_PORT as `make run` exports them; the check's reason goes to stderr, the list to stdout.
set -eu
procfile="${1:-Procfile}"
processes=$(sed -n 's/^\([A-Za-z0-9_-]*\):.*/\1/p' "$procfile" | grep -vx sandbox | tr '\n' ' ')
if grep -q '^sandbox:' "$procfile" && receiver sandbox --port "${SANDBOX_PORT:-8079}" --check >&2; then
  processes="${processes}sandbox"
fi
echo "${processes% }"
