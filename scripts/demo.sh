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
printf '\nThe balancer keeps running on %s. Stats page: http://127.0.0.1:8404/stats (user admin,\n' "$FRONTEND"
printf 'password in .state/local/secrets/haproxy-stats-password). Stop and remove everything: make clean\n'
