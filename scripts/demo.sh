#!/usr/bin/env bash
# The main job on the embedded `local` provider (no Docker): provision the balancer and a pool
# of web hosts on this machine, then show requests spread over them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"

FRONTEND="${HAPOOL_DEMO_URL:-http://127.0.0.1:8080/}"
REQUESTS="${HAPOOL_DEMO_REQUESTS:-30}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "provisioning the balancer and the pool (ansible-playbook playbooks/site.yml)"
ansible-playbook playbooks/site.yml

step "$REQUESTS requests through the balancer at $FRONTEND"
declare -A seen=()
fails=0
for _ in $(seq 1 "$REQUESTS"); do
    if body=$(curl -fsS --max-time 5 "$FRONTEND" 2>/dev/null); then
        seen["$body"]=$(( ${seen["$body"]:-0} + 1 ))
    else
        fails=$((fails + 1))
    fi
done
for body in "${!seen[@]}"; do
    printf '  %4d × %s\n' "${seen[$body]}" "$body"
done
printf '  %d distinct hosts answered, %d requests failed\n' "${#seen[@]}" "$fails"

step "what HAProxy sees (show stat on the admin socket)"
sock="${HAPOOL_STATE_DIR:-$PWD/.state}/local/haproxy/run/admin.sock"
echo "show stat" | socat -t 2 - "unix-connect:$sock" \
    | awk -F, 'NR == 1 { next } $1 != "" && $1 != "stats" && $1 != "main" {
                 printf "  %-8s %-12s %-6s sessions=%-3s checks=%s %s\n", $1, $2, $18, $5, $37, $74 }'

[ "$fails" -eq 0 ] && [ "${#seen[@]}" -gt 1 ] || { echo "demo: expected several hosts and no failed request" >&2; exit 1; }

STATE="${HAPOOL_STATE_DIR:-$PWD/.state}"
victim=$(ls "$STATE/local/pools/web" | grep -E '^web-[0-9a-f]{6}$' | head -n 1)
step "self-healing: kill -9 the nginx of $victim (master and workers), then heal.yml"
port=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' "$STATE/local/pools/web/$victim/instance.json")
master=$(cat "$STATE/local/pools/web/$victim/logs/nginx.pid")
# the master, its workers, and any older worker still holding the listening socket
pids=$( { echo "$master"; pgrep -P "$master" || true; ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | cut -d= -f2; } | sort -u)
kill -9 $pids
# HAProxy's checks mark it DOWN within seconds (fastinter); retries + redispatch keep clients served.
for _ in $(seq 1 30); do
    status=$(echo "show stat" | socat -t 2 - "unix-connect:$sock" | awk -F, -v v="$victim" '$2 == v { print $18 " (" $37 ")" }')
    case "$status" in DOWN*) break ;; esac
    sleep 0.5
done
echo "  HAProxy: $victim is $status"
mkdir -p "$STATE/heal"
ansible-playbook playbooks/heal.yml > "$STATE/heal/demo-heal.log" 2>&1 \
    || { tail -n 40 "$STATE/heal/demo-heal.log" >&2; echo "demo: heal.yml failed" >&2; exit 1; }
sed -n '/PLAY RECAP/,$p' "$STATE/heal/demo-heal.log" | sed 's/^/  /'
echo "  (full output: $STATE/heal/demo-heal.log)"
step "after healing: the event log ($STATE/heal/events.jsonl)"
tail -n 5 "$STATE/heal/events.jsonl" | sed 's/^/  /'
declare -A after=()
fails=0
for _ in $(seq 1 "$REQUESTS"); do
    if body=$(curl -fsS --max-time 5 "$FRONTEND" 2>/dev/null); then
        after["$body"]=$(( ${after["$body"]:-0} + 1 ))
    else
        fails=$((fails + 1))
    fi
done
for body in "${!after[@]}"; do printf '  %4d × %s\n' "${after[$body]}" "$body"; done
printf '  %d distinct hosts answered, %d requests failed\n' "${#after[@]}" "$fails"
[ -z "${after["Hello $victim!"]:-}" ] && [ "${#after[@]}" -eq "${#seen[@]}" ] \
    || { echo "demo: $victim should have been replaced by a new host" >&2; exit 1; }
printf '\nThe balancer keeps running on %s. Stats page: http://127.0.0.1:8404/stats (user admin,\n' "$FRONTEND"
printf 'password in .state/local/secrets/haproxy-stats-password). Stop and remove everything: make clean\n'
