#!/bin/sh
# Prints a heartbeat every $1 seconds. Everything on stdout/stderr reaches the
# AIGIS console and log/heartbeat.log.
interval=${1:-5}
echo "heartbeat up in $(pwd); token is $(wc -c < conf/demo.token) bytes (never printed)"
n=0
while true; do
    n=$((n + 1))
    echo "heartbeat $n at $(date +%H:%M:%S)"
    sleep "$interval"
done
