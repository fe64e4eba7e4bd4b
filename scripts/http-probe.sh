#!/usr/bin/env bash
# http-probe.sh: container health check for edr-worker without curl or
# wget (the runtime image is debian:bookworm-slim): one HTTP/1.0 GET over
# bash's /dev/tcp to the worker's own endpoint; exit 0 only on status 200.
#
# usage: http-probe.sh [PATH]          PATH defaults to /healthz
# The address comes from EDR_HTTP_ADDR (host:port, default
# 127.0.0.1:9464); a wildcard host (0.0.0.0, [::]) is probed on loopback.
set -uo pipefail

path="${1:-/healthz}"
addr="${EDR_HTTP_ADDR:-127.0.0.1:9464}"
if [[ "$addr" == off ]]; then
    echo "http-probe: EDR_HTTP_ADDR=off, nothing to probe" >&2
    exit 1
fi
port="${addr##*:}"
[[ "$port" =~ ^[0-9]+$ ]] || {
    echo "http-probe: no port in EDR_HTTP_ADDR=$addr" >&2
    exit 1
}
host="${addr%:*}"
host="${host#[}"
host="${host%]}"
case "$host" in
"" | 0.0.0.0) host=127.0.0.1 ;;
::) host=::1 ;;
esac

exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3
IFS=' ' read -r -t 5 _ code _ <&3 || exit 1
exec 3<&-
[[ "$code" == 200 ]]
