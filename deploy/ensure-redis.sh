#!/usr/bin/env sh
# Make sure a Redis answers at the broker URL; start a local one bound to 127.0.0.1 if we can.
url="${1:-redis://127.0.0.1:6379/0}"
hostport="${url#redis://}"; hostport="${hostport%%/*}"; hostport="${hostport##*@}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=6379
if redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1 || \
   python3 -c "import socket,sys; socket.create_connection(('$host',$port),1)" 2>/dev/null; then
  exit 0
fi
case "$host" in 127.0.0.1|localhost) ;; *) echo "No Redis answers at $url: start it, or set RECEIVER_BROKER_URL." >&2; exit 1;; esac
if command -v redis-server >/dev/null 2>&1; then
  mkdir -p var
  echo "Starting a local redis-server on 127.0.0.1:$port (data not kept)."
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$(pwd)/var" --logfile "$(pwd)/var/redis.log"
  sleep 0.5
else
  echo "No Redis at $url and no redis-server installed: install one (Debian: apt-get install redis-server) or set RECEIVER_BROKER_URL." >&2
  exit 1
fi
