#!/usr/bin/env bash
# The original design's heal loop, as the bench's baseline (issue 16): every SLEEP seconds, read
# HAProxy's `show stat`; for each server of BACKEND that is DOWN, destroy and recreate the same
# host under the same name and address by running RECREATE_DIR/<server>.sh (written by the bench
# from the host as it was launched: docker - `docker start` of the killed container, its name,
# image and address; local - the same nginx started again). No event, no
# lock, no template, no registration: HAProxy's own checks take the host back when it answers.
# Stops by itself after DURATION seconds (or when its parent kills it). One line per pass on stdout.
#
#   bench/naive_heal.sh SOCKET BACKEND RECREATE_DIR [SLEEP=10] [DURATION=3600]
set -u
socket=$1 backend=$2 dir=$3 sleep_s=${4:-10} duration=${5:-3600}
end=$((SECONDS + duration))
while [ "$SECONDS" -lt "$end" ]; do
    down=$(echo "show stat" | socat -t 5 stdio "unix-connect:$socket" 2>/dev/null \
           | awk -F, -v b="$backend" '$1 == b && $2 != "BACKEND" && $2 != "FRONTEND" && $18 ~ /^DOWN/ { print $2 }')
    for server in $down; do
        if [ -x "$dir/$server.sh" ]; then
            started=$(date +%s.%N)
            if "$dir/$server.sh" > "$dir/$server.log" 2>&1; then
                echo "$started $(date +%s.%N) recreated $server"
            else
                echo "$started $(date +%s.%N) failed $server: $(tail -1 "$dir/$server.log")"
            fi
        else
            echo "$(date +%s.%N) no recreate script for $server"
        fi
    done
    sleep "$sleep_s"
done
