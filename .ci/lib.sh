# Shared by .ci/dist-check and .ci/lowest-direct (sourced, not run). The caller sets NAME first.
# Gives: $work (a temporary directory, removed on success unless KEEP is set), step, fail,
# stop_servers, and an EXIT trap that names the failed step.

work=$(mktemp -d "/tmp/abflow-$NAME.XXXXXX")
started=$(date +%s)
current="setting up"

step() {
    current=$*
    echo "== $NAME [$(($(date +%s) - started))s]: $*"
}

fail() {
    echo "$NAME: $*" >&2
    exit 1
}

stop_servers() {
    # An embedded PostgreSQL stops with the process that started it; stop any that did not
    # (only ours: their data directories are under $work), by PID.
    local pids
    pids=$(pgrep -f "postgres -D $work/" || true)
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill -INT $pids 2>/dev/null || true
        sleep 2
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
}

_finish() {
    local rc=$?
    stop_servers
    if [ "$rc" -ne 0 ]; then
        echo "$NAME FAILED at: $current (exit $rc; logs in $work)" >&2
    elif [ -z "${KEEP:-}" ]; then
        rm -rf "$work"
    fi
    exit "$rc"
}
trap _finish EXIT

# abflow demo from an empty directory with nothing from the caller's environment; checks the
# three panels. $1: the abflow executable.
run_demo() {
    local abflow=$1
    mkdir -p "$work/empty"
    (
        cd "$work/empty"
        env -u ABFLOW_DATABASE_URL -u ABFLOW_WAREHOUSE_URL -u ABFLOW_SCHEMA -u ABFLOW_HOME \
            -u ABFLOW_ASSIGNMENTS_SOURCE -u ABFLOW_EVENTS_SOURCE -u ABFLOW_PUSHGATEWAY_URL \
            -u PREFECT_API_URL -u PREFECT_API_KEY -u PREFECT_PROFILES_PATH -u PYTHONPATH \
            -u VIRTUAL_ENV PREFECT_HOME="$work/prefect-home" \
            PREFECT_SERVER_ANALYTICS_ENABLED=false \
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 \
            "$abflow" demo >"$work/demo.out" 2>"$work/demo.err"
    ) || { tail -40 "$work/demo.err"; cat "$work/demo.out"; fail "abflow demo"; }
    cat "$work/demo.out"
    local key
    for key in checkout_button followup_timing enrichment_strategy; do
        grep -q "$key" "$work/demo.out" || fail "abflow demo printed no panel for $key"
    done
    grep -q "recommendation: ship" "$work/demo.out" || fail "abflow demo recommended no ship"
    [ -d "$work/empty/.abflow/pgdata" ] || fail "abflow demo kept no state under ./.abflow"
    # the demo kept its local Prefect server for the next command (the default): stop it
    [ -f "$work/prefect-home/abflow-server.json" ] || fail "abflow demo kept no Prefect server"
    PREFECT_HOME="$work/prefect-home" "$abflow" server stop || fail "abflow server stop"
    [ ! -f "$work/prefect-home/abflow-server.json" ] || fail "the kept Prefect server is still recorded"
    stop_servers
}
