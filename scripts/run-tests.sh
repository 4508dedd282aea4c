#!/usr/bin/env bash
# Run every check and test suite in order, keep going after a failure so one run shows all
# of them, print a summary with the time of each stage, and exit non-zero if any failed.
# pytest's "no tests collected" (exit 5) counts as a failure: a suite that runs nothing
# must not pass silently.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg" PYTHONDONTWRITEBYTECODE=1

declare -a names=() results=() times=()
failed=0

stage() {
    local name=$1; shift
    local start=$SECONDS rc
    printf '\n==================== %s\n' "$name"
    "$@"; rc=$?
    if [ $rc -eq 5 ] && [ "$1" = "pytest" ]; then
        echo "$name: pytest collected no tests — counted as a failure"
    fi
    names+=("$name"); times+=($((SECONDS - start)))
    if [ $rc -eq 0 ]; then results+=(ok); else results+=("FAILED (exit $rc)"); failed=1; fi
}

# Every scenario (roles/*/molecule/default and the top-level molecule/default, 4 today), up to
# $WORKERS at a time (each has its own container names and molecule state; its output is
# printed whole when it ends). Finding none is a failure, like pytest's exit 5: a stage that
# ran nothing must not pass.
molecule_all() {
    local d rc=0 logs i jobs=${WORKERS:-2}
    local -a ran=() pids=()
    [ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
    logs=$(mktemp -d)
    # Interrupted: stop the scenarios still running (background jobs ignore SIGINT) and clean up.
    trap 'for i in "${pids[@]}"; do pkill -TERM -P "$i"; kill "$i"; done 2>/dev/null; wait; rm -rf "$logs"; exit 130' INT TERM
    for d in roles/*/ .; do
        [ -f "$d/molecule/default/molecule.yml" ] || continue
        d=${d%/}
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
        echo "-- molecule test in $d (started)"
        (cd "$d" && molecule test) > "$logs/${#ran[@]}.log" 2>&1 &
        pids+=($!); ran+=("$d")
    done
    for i in "${!ran[@]}"; do
        if wait "${pids[$i]}"; then
            printf -- '-- molecule test in %s: passed\n' "${ran[$i]}"
        else
            printf -- '-- molecule test in %s: FAILED\n' "${ran[$i]}"; rc=1
        fi
        cat "$logs/$i.log"
    done
    rm -rf "$logs"
    trap - INT TERM
    if [ ${#ran[@]} -eq 0 ]; then
        echo "molecule: no scenario found (roles/*/molecule/default, molecule/default) — counted as a failure"
        return 1
    fi
    echo "molecule: ${#ran[@]} scenario(s) ran: ${ran[*]}"
    return $rc
}

# Usage: scripts/run-tests.sh [lint] [unit] [integration] [molecule] [e2e] [chaos]   (default: all, in this order)
want=" ${*:-lint unit integration molecule e2e chaos} "
on() { [[ "$want" == *" $1 "* ]]; }

if on lint; then
    stage "ansible-lint (production)" ansible-lint --offline --profile production
    stage "ruff"                      ruff check .
    stage "mypy (module_utils)"       mypy
fi
# Unit, integration and end-to-end tests run on two workers (pytest-xdist; the end-to-end files
# one file per worker, as a file's tests share its fixtures). Every test owns its ports, state
# root, docker scope and cron file; most of an end-to-end test's time is spent waiting on health
# checks, drains and launches, not on the CPU. HAPOOL_TEST_WORKERS=0 runs them one at a time.
# The chaos tests count failed requests under load and run alone.
WORKERS=${HAPOOL_TEST_WORKERS:-2}
par=() e2e_par=()
if [ "$WORKERS" != 0 ]; then par=(-n "$WORKERS"); e2e_par=(-n "$WORKERS" --dist loadfile); fi
on unit               && stage "unit tests"         pytest tests/unit "${par[@]}"
on integration && stage "integration tests"  pytest tests/integration "${par[@]}"
on molecule    && stage "molecule scenarios" molecule_all
on e2e         && stage "end-to-end tests"   pytest tests/e2e "${e2e_par[@]}" --durations=25
on chaos       && stage "chaos tests"        pytest tests/chaos -m chaos -s --durations=25  # -s: print the figures

printf '\n==================== summary\n'
for i in "${!names[@]}"; do
    printf '%-28s %-22s %5ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
printf 'total %ss\n' "$SECONDS"
exit $failed
