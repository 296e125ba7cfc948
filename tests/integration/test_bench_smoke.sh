#!/bin/sh
# test_bench_smoke.sh — the benchmarks still run: bench_bus, bench_kit,
# bench_audit, bench_authz_http (Check over HTTP beside the bus, a streamed listing's first line beside its last), bench_telemetry_browser (a real browser's EventSource), bench_authz_stores (a store among many), bench_ciba, bench_vault, bench_orch (every service as a process: the gated step, paused runs, a restart), bench_authz --quick (bench_authz with the sanctum-authz daemon as its own
# process and again with --thread) and bench_http complete and print every
# figure the README quotes.
# Figures are not judged here (CI timings are noise); `make bench` does.
# Prints `ok NAME` / `not ok NAME` lines, then `N passed, N failed`;
# exits 1 when anything failed.

. "$(dirname "$0")/results.sh"
BUILD=${BUILD:-build}
# absolute, so that the daemon bench_authz starts is told from other trees' (pgrep below)
BUILD=$(cd "$BUILD" && pwd)

# Does output file $1 have a line `bench NAME <number>` for each NAME after it?
has_figures () {
    out=$1; shift
    for name in "$@"; do
        grep -Eq "^bench $name [0-9.]+ " "$out" || { echo "missing: $name"; return 1; }
    done
}

"$BUILD/bench/bench_bus" --quick >"$TMP/bus" 2>"$TMP/bus.err"
result "bench_bus_runs" $? "$(tail -n 3 "$TMP/bus.err" | tr '\n' ' ')"
has_figures "$TMP/bus" bus_rtt_p50 bus_rtt_p99 bus_throughput_64 >"$TMP/why"
result "bench_bus_figures" $? "$(cat "$TMP/why")"

"$BUILD/bench/bench_kit" --quick >"$TMP/kit" 2>"$TMP/kit.err"
result "bench_kit_runs" $? "$(tail -n 3 "$TMP/kit.err" | tr '\n' ' ')"
has_figures "$TMP/kit" kit_call_p50 kit_call_p99 kit_call_throughput_64 kit_follow_durable >"$TMP/why"
result "bench_kit_figures" $? "$(cat "$TMP/why")"
grep -Eq "^bench kit_targets (met|missed)" "$TMP/kit"
result "bench_kit_verdict" $?

for shape in process thread; do
    flag=""
    [ "$shape" = thread ] && flag=--thread
    "$BUILD/bench/bench_authz" --quick $flag >"$TMP/authz" 2>"$TMP/authz.err"
    result "bench_authz_runs_$shape" $? "$(tail -n 3 "$TMP/authz.err" | tr '\n' ' ')"
    has_figures "$TMP/authz" authz_check_throughput authz_check_p99 lmdb_raw_get \
        authz_bus_check_p50 authz_bus_check_p99 bus_health_p99 raw_zmq_paced_p99 \
        authz_bus_check_in_service_p99 authz_list_objects_p50 authz_list_objects_p99 \
        authz_decide_throughput authz_decide_p50 authz_decide_p99 \
        authz_bus_check_p99_beside_list_objects authz_bus_list_objects_p50 \
        authz_bus_check_p99_beside_writes authz_bus_writes_beside_checks authz_bus_writes_concurrent >"$TMP/why"
    result "bench_authz_figures_$shape" $? "$(cat "$TMP/why")"
    # the example's data gives every kind of decision
    grep -Eq "^bench authz_decide_mix [1-9][0-9]* allow [1-9][0-9]* deny [1-9][0-9]* approval_required" "$TMP/authz"
    result "bench_authz_decide_mix_$shape" $? "$(grep decide_mix "$TMP/authz")"
    grep -Eq "^bench authz_targets (met|missed)" "$TMP/authz"
    result "bench_authz_verdict_$shape" $?
    grep -q "service as its own process" "$TMP/authz"
    [ $? -eq $([ "$shape" = process ] && echo 0 || echo 1) ]
    result "bench_authz_shape_$shape" $?
done
"$BUILD/bench/bench_http" --quick >"$TMP/http" 2>"$TMP/http.err"
result "bench_http_runs" $? "$(tail -n 3 "$TMP/http.err" | tr '\n' ' ')"
has_figures "$TMP/http" http_client_throughput_64 >"$TMP/why"
result "bench_http_figures" $? "$(cat "$TMP/why")"
"$BUILD/bench/bench_authz_http" --quick >"$TMP/authz_http" 2>"$TMP/authz_http.err"
result "bench_authz_http_runs" $? "$(tail -n 3 "$TMP/authz_http.err" | tr '\n' ' ')"
has_figures "$TMP/authz_http" authz_http_check_throughput_64 authz_http_streamed_first_line >"$TMP/why"
result "bench_authz_http_figures" $? "$(cat "$TMP/why")"
"$BUILD/bench/bench_authz_stores" --quick >"$TMP/authz_stores" 2>"$TMP/authz_stores.err"
result "bench_authz_stores_runs" $? "$(tail -n 3 "$TMP/authz_stores.err" | tr '\n' ' ')"
has_figures "$TMP/authz_stores" authz_check_among_stores >"$TMP/why"
result "bench_authz_stores_figures" $? "$(cat "$TMP/why")"
"$BUILD/bench/bench_audit" --quick >"$TMP/audit" 2>"$TMP/audit.err"
result "bench_audit_runs" $? "$(tail -n 3 "$TMP/audit.err" | tr '\n' ' ')"
has_figures "$TMP/audit" audit_bus_appends audit_appends_per_fsync audit_append_p50 audit_append_p99 audit_follow_lag_p50 \
    audit_follow_lag_p99 audit_inclusion_100k_p50 \
    audit_inclusion_100k_p99 audit_consistency_p50 audit_root_p50 >"$TMP/why"
result "bench_audit_figures" $? "$(cat "$TMP/why")"
grep -Eq "^bench audit_targets (met|missed)" "$TMP/audit"
result "bench_audit_verdict" $?
"$BUILD/bench/bench_ciba" --quick >"$TMP/ciba" 2>"$TMP/ciba.err"
result "bench_ciba_runs" $? "$(tail -n 3 "$TMP/ciba.err" | tr '\n' ' ')"
has_figures "$TMP/ciba" ciba_approval_p50 ciba_approval_p99 ciba_authorize_held_rate \
    ciba_status_p50_with_2000_pending ciba_pending_2000_rss ciba_phase_authorize_p50 ciba_phase_decide_p50 \
    ciba_change_commit_mean ciba_approval_bytes_written >"$TMP/why"
result "bench_ciba_figures" $? "$(cat "$TMP/why")"
grep -Eq "^bench ciba_targets (met|missed)" "$TMP/ciba"
result "bench_ciba_verdict" $?
"$BUILD/bench/bench_vault" --quick >"$TMP/vault" 2>"$TMP/vault.err"
result "bench_vault_runs" $? "$(tail -n 3 "$TMP/vault.err" | tr '\n' ' ')"
has_figures "$TMP/vault" vault_lease_p50 vault_lease_p99 vault_mint_verify >"$TMP/why"
result "bench_vault_figures" $? "$(cat "$TMP/why")"
grep -Eq "^bench vault_targets (met|missed)" "$TMP/vault"
result "bench_vault_verdict" $?
"$BUILD/bench/bench_orch" --quick >"$TMP/orch" 2>"$TMP/orch.err"
result "bench_orch_runs" $? "$(tail -n 3 "$TMP/orch.err" | tr '\n' ' ')"
has_figures "$TMP/orch" orch_gated_step_p50 orch_gated_step_p99 orch_paused_run_rss orch_resume_500_paused >"$TMP/why"
result "bench_orch_figures" $? "$(cat "$TMP/why")"
grep -Eq "^bench orch_targets (met|missed)" "$TMP/orch"
result "bench_orch_verdict" $?
# a real browser (chromium, playwright-core): missing, it fails and says which
BUILD="$BUILD" /usr/bin/python3 "$(dirname "$0")/../bench/bench_telemetry_browser.py" --quick \
    >"$TMP/browser" 2>"$TMP/browser.err"
result "bench_telemetry_browser_runs" $? "$(tail -n 3 "$TMP/browser.err" | tr '\n' ' ')"
has_figures "$TMP/browser" telemetry_browser_latency_p50 telemetry_browser_latency_p99 >"$TMP/why"
result "bench_telemetry_browser_figures" $? "$(cat "$TMP/why")"

# the daemon the process shape started is gone with the bench
sleep 0.2
# (this checkout's binary only: other checkouts on the machine may be running theirs)
! pgrep -f "$BUILD/bench/../bin/sanctum-authz" >/dev/null
result "bench_authz_daemon_stopped" $?

results_done
