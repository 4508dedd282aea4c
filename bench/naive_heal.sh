#!/usr/bin/env bash
# The original design's heal loop, as the bench's baseline (issue 16): every SLEEP seconds (on the
# clock's multiples of SLEEP, as the heal timer's ticks; the original slept SLEEP after each pass), read
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
    # the next pass at the clock's next multiple of SLEEP (where the heal timer's ticks fall, so
    # that the bench can kill a host at the same point of both periods)
    now_ms=$(( $(date +%s%N) / 1000000 ))
    wait_ms=$(( (now_ms / (sleep_s * 1000) + 1) * sleep_s * 1000 - now_ms ))
    sleep "$((wait_ms / 1000)).$(printf %03d $((wait_ms % 1000)))"
done
