#!/usr/bin/env bash
# The main job on the embedded `local` provider (no Docker): provision the balancer and a pool
# of web hosts on this machine, show requests spread over them, heal a host killed with
# kill -9, then scale the pool out (3 -> 5) and in (5 -> 2) from its metric file while a
# background load counts every failed request.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"

FRONTEND="${HAPOOL_DEMO_URL:-http://127.0.0.1:8080/}"
REQUESTS="${HAPOOL_DEMO_REQUESTS:-30}"
STATE="${HAPOOL_STATE_DIR:-$PWD/.state}"
SCALE_OUT="${HAPOOL_DEMO_SCALE_OUT:-5}"  # the count written to the metric file, then...
SCALE_IN="${HAPOOL_DEMO_SCALE_IN:-2}"    # ... this one
WINDOW="${HAPOOL_DEMO_STABILIZATION:-5}" # seconds of scale-in stabilization (the inventory says 120)
METRIC="$STATE/scale/web.desired"
sock="$STATE/local/haproxy/run/admin.sock"
started=$(date +%s)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

# send N requests through the balancer and print how many each host answered; leaves the
# counts in `answers` (body -> count) and the number of failed requests in `fails`
declare -A answers=()
fails=0
send() {
    answers=()
    fails=0
    local body
    for _ in $(seq 1 "$1"); do
        if body=$(curl -fsS --max-time 5 "$FRONTEND" 2>/dev/null); then
            answers["$body"]=$(( ${answers["$body"]:-0} + 1 ))
        else
            fails=$((fails + 1))
        fi
    done
    for body in "${!answers[@]}"; do printf '  %4d × %s\n' "${answers[$body]}" "$body"; done | sort -k3
    printf '  %d distinct hosts answered, %d requests failed\n' "${#answers[@]}" "$fails"
}

# HAProxy's view of the pool (show stat on the admin socket)
show_stat() {
    echo "show stat" | socat -t 2 - "unix-connect:$sock" \
        | awk -F, 'NR == 1 { next } $1 != "" && $1 != "stats" && $1 != "main" {
                     printf "  %-8s %-12s %-6s sessions=%-3s checks=%s %s\n", $1, $2, $18, $5, $37, $74 }'
}

# the servers of backend web that HAProxy reports UP (also "UP 1/3": going down, still serving)
servers_up() {
    echo "show stat" | socat -t 2 - "unix-connect:$sock" \
        | awk -F, '$1 == "web" && $2 != "BACKEND" && $2 != "FRONTEND" && $18 ~ /^UP/' | wc -l
}

# the plan scale.yml printed (its "Show the plan" task), on one line
plan_line() {
    python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
for block in re.findall(r"TASK \[Show the plan\].*?\n(.*?)\n\n", text, re.S):
    found = re.search(r"msg: (['\"])(.*)\1\s*$", block, re.S)
    if found:
        msg = " ".join(found.group(2).split())
        print("  " + (msg.replace("''", "'") if found.group(1) == "'" else msg))
EOF
}

# one run of scale.yml with the demo's short timings; the log goes to $STATE/scale/demo-<name>.log
scale() {
    local log="$STATE/scale/demo-$1.log" t0=$SECONDS
    ansible-playbook playbooks/scale.yml \
        -e "hapool_scale_in_stabilization=$WINDOW" -e hapool_scale_in_cooldown=0 -e hapool_scale_out_cooldown=0 \
        > "$log" 2>&1 || { tail -n 40 "$log" >&2; die "scale.yml failed (log: $log)"; }
    plan=$(plan_line "$log")
    echo "$plan"
    echo "  (scale.yml took $((SECONDS - t0)) s; full output: $log)"
}

# the events logged since $1 (epoch seconds) whose action starts with $2, one line each
events_since() {
    python3 - "$STATE/heal/events.jsonl" "$1" "$2" <<'EOF'
import json, sys, time
log, since, prefix = sys.argv[1], float(sys.argv[2]), sys.argv[3]
for line in open(log, encoding="utf-8", errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue  # a torn or unreadable line
    action = str(e.get("action", ""))
    if not action.startswith(prefix) or float(e.get("time") or 0) < since:
        continue
    name = e.get("instance")
    if action == "replace_launch":
        what = f"{name}: launching its replacement {e.get('replacement')} ({e.get('reason')})"
    elif action == "replace":
        what = f"{name} replaced by {e.get('replacement')} in {e.get('duration')} s ({e.get('reason')})"
        if e.get("serving_seconds") is not None:
            what = (f"{name} replaced by {e.get('replacement')} (template {e.get('template') or '?'}): launched in "
                    f"{e.get('launch_seconds')} s, serving {e.get('serving_seconds')} s after the replacement began, "
                    f"run done in {e.get('duration')} s ({e.get('reason')})")
    elif action == "scale_recommendation":
        what = f"recommendation {e.get('recommendation')} (current {e.get('current')})"
    elif action in ("scale_out", "scale_in"):
        what = f"{e.get('from')} -> {e.get('to')}"
        what += f", drain {', '.join(e['drain'])}" if e.get("drain") else ""
        what += f" (capped by {', '.join(e['capped_by'])})" if e.get("capped_by") else ""
    elif action == "scale_launch":
        serving = e.get("serving_seconds") if e.get("serving_seconds") is not None else e.get("duration")
        what = f"{name}: launched in {e.get('launch_seconds')} s, serving {serving} s after its launch began"
    elif action == "scale_drain":
        what = f"{name}: marked leaving, draining"
    elif action == "scale_remove":
        what = f"{name}: removed ({e.get('reason')}; waited {e.get('duration')} s for its sessions)"
    else:
        what = f"{name or ''} {e.get('reason') or ''}".strip()
    print(f"  {time.strftime('%H:%M:%S', time.localtime(float(e['time'])))}  {action:<21} {what}")
EOF
}

# the demo starts from the configured size: no count in the metric file until the scale part
mkdir -p "$STATE/scale"
rm -f "$METRIC"

step "provisioning the balancer and the pool (ansible-playbook playbooks/site.yml)"
ansible-playbook playbooks/site.yml

step "$REQUESTS requests through the balancer at $FRONTEND"
send "$REQUESTS"
declare -A seen=()
for body in "${!answers[@]}"; do seen["$body"]=${answers[$body]}; done

step "what HAProxy sees (show stat on the admin socket)"
show_stat

[ "$fails" -eq 0 ] && [ "${#seen[@]}" -gt 1 ] || die "expected several hosts and no failed request"

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
    || { tail -n 40 "$STATE/heal/demo-heal.log" >&2; die "heal.yml failed"; }
sed -n '/PLAY RECAP/,$p' "$STATE/heal/demo-heal.log" | sed 's/^/  /'
echo "  (full output: $STATE/heal/demo-heal.log)"
step "after healing: the event log ($STATE/heal/events.jsonl)"
events_since "$started" replace
send "$REQUESTS"
[ -z "${answers["Hello $victim!"]:-}" ] && [ "${#answers[@]}" -eq "${#seen[@]}" ] \
    || die "$victim should have been replaced by a new host"

step "auto scaling out: echo $SCALE_OUT > $METRIC, then scale.yml"
echo "$SCALE_OUT" > "$METRIC"
out_started=$(date +%s)
scale out
events_since "$out_started" scale_launch
up=$(servers_up)
[ "$up" -eq "$SCALE_OUT" ] || die "expected $SCALE_OUT servers UP after the scale-out, HAProxy reports $up"
step "$REQUESTS requests through the balancer: now spread over $SCALE_OUT hosts"
# new servers ramp up over HAProxy's slowstart (10 s): ask again until every host has answered
for try in $(seq 1 10); do
    send "$REQUESTS" > "$STATE/scale/demo-spread.txt"
    [ "${#answers[@]}" -ge "$SCALE_OUT" ] && break
    sleep 2
done
cat "$STATE/scale/demo-spread.txt"
[ "$fails" -eq 0 ] && [ "${#answers[@]}" -eq "$SCALE_OUT" ] \
    || die "expected $SCALE_OUT hosts answering and no failed request"

step "the pool's status (make status): each host's launch template version"
ANSIBLE_CALLBACK_RESULT_FORMAT=json ansible-playbook playbooks/status.yml > "$STATE/scale/demo-status.log" 2>&1 \
    || { tail -n 40 "$STATE/scale/demo-status.log" >&2; die "status.yml failed"; }
python3 - "$STATE/scale/demo-status.log" <<'PY' || die "status.yml printed no table"
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
lines = [m.group(1) for m in re.finditer(r'"msg": "(.*)"', text)]
table = [l for l in lines if "POOL" in l]
if not table:
    sys.exit(1)
for line in table[0].split("\\n"):
    print("  " + line)
PY
grep -Eq "template: current [0-9a-f]{12}" "$STATE/scale/demo-status.log" \
    || die "status.yml shows no baked template version"

step "auto scaling in: echo $SCALE_IN > $METRIC, then scale.yml until the pool has $SCALE_IN hosts, under load"
echo "$SCALE_IN" > "$METRIC"
load_out="$STATE/scale/demo-load.json"
rm -f "$load_out"
# a paced keep-alive load (20 requests/s, 2 connections), bounded to 7 minutes whatever happens
"$PWD/.venv/bin/python" scripts/demo_load.py "$FRONTEND" --rate 20 --clients 2 --max-seconds 420 --out "$load_out" &
load_pid=$!
trap 'kill "$load_pid" 2>/dev/null || true' EXIT
echo "  background load: pid $load_pid, 20 requests/s through $FRONTEND"
runs=0
while :; do
    runs=$((runs + 1))
    [ "$runs" -le 6 ] || die "the pool did not shrink to $SCALE_IN hosts in 6 runs of scale.yml"
    echo "  scale.yml run $runs:"
    scale "in-$runs"
    up=$(servers_up)
    echo "  HAProxy: $up servers UP"
    [ "$up" -le "$SCALE_IN" ] && break
    if [[ "$plan" == *"capped by"*scale_in_stabilization* ]]; then
        echo "  held by the stabilization window (the highest recommendation of the last $WINDOW s): waiting $((WINDOW + 1)) s"
        sleep "$((WINDOW + 1))"
    fi
done
sleep 2  # a last bit of load on the smaller pool
kill "$load_pid" 2>/dev/null || true  # it may have stopped at its own bound already
wait "$load_pid" || true
trap - EXIT
[ -s "$load_out" ] || die "the background load wrote no summary ($load_out)"
read -r sent failed seconds errors < <(python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(s["sent"], s["failed"], s["seconds"], json.dumps(s["errors"]).replace(" ", ""))' "$load_out")
printf '  background load: %d requests sent in %s s during the drains, %d failed%s\n' \
    "$sent" "$seconds" "$failed" "$([ "$failed" -eq 0 ] || echo " $errors")"
[ "$failed" -eq 0 ] && [ "$sent" -gt 0 ] || die "$failed of $sent requests failed while the pool shrank"

step "$REQUESTS requests through the balancer: $SCALE_IN hosts left"
send "$REQUESTS"
[ "$fails" -eq 0 ] && [ "${#answers[@]}" -eq "$SCALE_IN" ] \
    || die "expected $SCALE_IN hosts answering and no failed request"

step "the scale events of this demo ($STATE/heal/events.jsonl)"
events_since "$started" scale_

printf '\nThe balancer keeps running on %s with %d hosts. Stats page: http://127.0.0.1:8404/stats\n' "$FRONTEND" "$SCALE_IN"
printf '(user admin, password in .state/local/secrets/haproxy-stats-password). Stop and remove\n'
printf 'everything: make clean. Every event of the demo: make events SINCE=15m\n'
printf 'demo finished in %d s\n' "$(( $(date +%s) - started ))"
