"""The headline table of one `loadtest/run-all.sh` run, read from the results files it wrote.

    python3 loadtest/summary.py loadtest/results 2026-12-02T20:30:00Z > loadtest/results/summary.md

Every figure is copied from a results file, with the time the file gives (the geofence and
baseline reports: when they started; a watch-load report: when it was written, at its end); a
file that is missing or older than the run's start (the second argument) is named as such rather
than quoted, so the summary never mixes two runs silently.
"""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(sys.argv[1] if len(sys.argv) > 1 else "loadtest/results")
RUN_START = datetime.fromisoformat(sys.argv[2].replace("Z", "+00:00")) if len(sys.argv) > 2 else None


def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def started(report):
    """When a results file says its run started, in UTC (None if it does not say)."""
    raw = report.get("date") or report.get("machine", {}).get("date")
    if not raw:
        return None
    if raw.endswith(" UTC"):  # the geofence report: "2026-12-02 14:49 UTC"
        return datetime.strptime(raw, "%Y-%m-%d %H:%M UTC").replace(tzinfo=timezone.utc)
    head, dot, rest = raw.replace("Z", "+00:00").partition(".")
    if dot:  # nanoseconds: Python reads at most six digits
        digits = "".join(c for c in rest if c.isdigit())
        raw = f"{head}.{digits[:6]}{rest[len(digits):]}"
    return datetime.fromisoformat(raw).astimezone(timezone.utc)


def hm(t):
    return t.strftime("%H:%M") if t else "?"


def ms(v):
    return "–" if v is None else (f"{v / 1000:.1f} s" if v >= 1000 else f"{v:.0f} ms")


def rate(v):
    return "–" if v is None else f"{v:,.0f}/s"


def back_to_normal(secs):
    """When p99 was back under 50 ms after a burst or an overload, as the report says it."""
    return f"after {secs} s" if secs is not None else "not within the run"


def phase(report, name):
    return next((p for p in report.get("phases", []) if p["name"] == name), None)


def main():
    out = []
    stale = []

    def current(name):
        report = load(name)
        if report is None:
            stale.append(f"{name}: no results file")
            return None
        t = started(report)
        # The geofence report gives whole minutes.
        if RUN_START and t and t < RUN_START.replace(second=0, microsecond=0):
            stale.append(f"{name}: from an earlier run ({t:%Y-%m-%d %H:%M})")
            return None
        return report

    baseline = current("baseline")
    run_start = RUN_START or (started(baseline) if baseline else None)
    machine = baseline.get("machine", "?") if baseline else "?"
    out.append(f"# Load benchmarks, one run ({run_start:%Y-%m-%d} from {hm(run_start)} UTC, {machine})\n" if run_start else "# Load benchmarks\n")
    out.append("Written by `loadtest/summary.py` from the results files of `loadtest/run-all.sh`; each row names the file it comes from.\n")

    geofence = current("geofence")
    if geofence:
        out.append(f"## Geofence (`geofence.json`, {geofence['machine'].get('date', '?')})\n")
        out.append("| zones | trygg q/s, p50 / p99 | shapely 2 bulk q/s | M1 ratio | PostGIS, pgbench q/s | M2 ratio |")
        out.append("|---|---|---|---|---|---|")
        for s in geofence["sizes"]:
            o, sh, pg = s["ours"], s["shapely"], s["postgis"]
            out.append(
                f"| {o['zones']:,} | {o['throughput_qps']:,.0f}, {o['p50_ns'] / 1000:.1f} / {o['p99_ns'] / 1000:.1f} µs "
                f"| {sh['bulk_qps']:,.0f} | {s['m1_ratio']:.1f}× | {pg['pgbench']['qps']:,.0f} | {s['m2_ratio']:.1f}× |"
            )
        out.append("")

    out.append("## M3 over device TCP (`watch-m3-*.json`: 19,900 watches, 99,500 zones, 30 s warm-up + 300 s)\n")
    out.append("| backend | done at | offered | answered | ack p50 / p99 / p99.9 | server CPU s per 1k fixes | RSS per idle connection | RSS max | exit → push p50 / p99 | exits alarmed | answered but not stored |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    m3 = {}
    for backend in ("sqlite", "postgres"):
        r = current(f"watch-m3-{backend}")
        if not r:
            continue
        s = phase(r, "steady")
        v = r["verification"]
        e = r["exit_to_push"]["ms"]
        m3[backend] = s["acked_per_s"]
        out.append(
            f"| {backend} | {hm(started(r))} | {rate(s['offered_per_s'])} | **{rate(s['acked_per_s'])}** "
            f"| {ms(s['ack_ms']['p50'])} / {ms(s['ack_ms']['p99'])} / {ms(s['ack_ms']['p99_9'])} "
            f"| {s['server_cpu_s_per_1k_fixes']} | {r['rss_bytes_per_idle_connection']:,.0f} B | {s['server_rss_max_mib']} MiB "
            f"| {ms(e.get('p50'))} / {ms(e.get('p99'))} | {v['zone_exit_alarms']} of {v['leavers']} "
            f"| {v['acked_but_not_stored']} |"
        )
    out.append("")

    if baseline:
        out.append(f"## Baseline (`baseline.json`, {hm(started(baseline))}): {baseline['per_fix']}, pgbench\n")
        best = baseline["best_fixes_per_s"]
        open_loop = next((r["fixes_per_s"] for r in baseline["runs"] if r["label"].startswith("open loop")), None)
        out.append(f"At its best {best:,.0f} fixes/s; open loop at {baseline['open_loop_rate']:,}/s it answered "
                   f"{rate(open_loop)} (p99 {ms(baseline.get('open_loop_p99_ms_sampled'))}).\n")
        peer = open_loop or best
        for backend, answered in m3.items():
            out.append(f"- trygg on {backend}: {answered / peer:.2f}× the baseline at the same offered load "
                       f"({answered / best:.2f}× its best closed-loop rate); target ≥ 5×.")
        out.append("")

    out.append("## Ceiling, burst, storm, overload (`watch-SCENARIO-BACKEND.json`)\n")
    out.append("| scenario | backend | done at | result |")
    out.append("|---|---|---|---|")
    for backend in ("sqlite", "postgres"):
        r = current(f"watch-ceiling-{backend}")
        if r:
            steps = "; ".join(
                f"{p['offered_per_s']:,.0f}: {rate(p['acked_per_s'])}, p99 {ms(p['ack_ms']['p99'])}"
                for p in r["phases"] if p["name"].startswith("step-")
            )
            out.append(f"| ceiling | {backend} | {hm(started(r))} | **{r['summary']['ceiling_per_s']:,.0f}/s** with p99 ≤ 50 ms ({steps}) |")
        r = current(f"watch-burst-{backend}")
        if r:
            b, a = r["summary"]["burst"], r["summary"]["after"]
            v = r["verification"]
            back = r["summary"]["secs_after_burst_until_p99_ok"]
            out.append(
                f"| burst | {backend} | {hm(started(r))} | {rate(b['offered_per_s'])} for 30 s answered {rate(b['acked_per_s'])} "
                f"(p99 {ms(b['ack_ms']['p99'])}); after it p99 {ms(a['ack_ms']['p99'])}, back to p99 ≤ 50 ms "
                f"{back_to_normal(back)}; "
                f"{v['acked_but_not_stored']} answered but not stored, {v['zone_exit_alarms']} of {v['leavers']} exits |"
            )
        r = current(f"watch-storm-{backend}")
        if r:
            s = r["summary"]
            v = r["verification"]
            out.append(
                f"| storm | {backend} | {hm(started(r))} | {s['outage_s']:.0f} s outage, ~{s['buffered_per_watch_about']} buffered fixes a watch, "
                f"reconnect within {s['reconnect_within_s']:.0f} s: drained {s['drained_s_after_network_back_upper_bound']} s after the network "
                f"came back; {v['acked_but_not_stored']} answered but not stored, {v['zone_exit_alarms']} of {v['leavers']} exits, "
                f"{v['duplicate_zone_exit_alarms']} duplicate alarms |"
            )
        r = current(f"watch-overload-{backend}")
        if r:
            o, a = r["summary"]["overload"], r["summary"]["after"]
            v = r["verification"]
            back = r["summary"]["secs_after_overload_until_p99_ok"]
            out.append(
                f"| overload | {backend} | {hm(started(r))} | {rate(o['offered_per_s'])} for 60 s answered {rate(o['acked_per_s'])} "
                f"(p99 {ms(o['ack_ms']['p99'])}, RSS max {o['server_rss_max_mib']} MiB); back to p99 ≤ 50 ms "
                f"{back_to_normal(back)}; "
                f"{v['acked_but_not_stored']} answered but not stored |"
            )
    for name in ("watch-http-flood-sqlite", "watch-http-flood-valid-token-sqlite"):
        r = current(name)
        if r:
            rss = r["server_rss_mib"]
            out.append(
                f"| http-flood ({r['token'].split()[0]} token) | sqlite | {hm(started(r))} | {r['requests']} concurrent "
                f"{r['body_bytes'] // 1024} KiB posts: RSS {rss['before']} → {rss['peak']} MiB, answers {r['answers_by_status']} |"
            )
    out.append("")
    if stale:
        out.append("Not from this run: " + "; ".join(stale) + ".\n")
    print("\n".join(out))


main()
