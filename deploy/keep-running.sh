#!/usr/bin/env sh
# Run a command, and start it again whenever it exits on its own, as systemd's Restart= does.
# For `make run`: honcho stops every process as soon as one exits, and a Celery worker can exit
# after Redis comes back (docs/deployment.md). INT or TERM (Ctrl-C, honcho stopping) reaches the
# command too, since honcho signals the whole process group; once it has stopped, so do we.
trap 'exit 0' INT TERM
while :; do
    "$@"
    echo "keep-running: $1 exited with status $?; starting it again in 1 s" >&2
    sleep 1
done
