"""Reads what benches/verify/run collected and prints the comparison.

exgate's rate is taken over the whole `exgate verify` process (start, project and CSV load,
SQLite state, every mailbox on every side of the project, the JSON report), exchangelib's over its check alone
(token, version probe, every mailbox; not the interpreter start or imports), which leans in
exchangelib's favour. Requests are EWS requests: exgate's from the steps of its JSON report
(attempts of `open` and `inbox`), exchangelib's counted at requests' HTTP adapter.

Exit status: 0 when both tools checked every mailbox ok, 1 otherwise (the rates would mean
nothing), whatever the rates.
"""

import argparse
import json
import pathlib
import re
import sys

EXGATE_TARGET_RATE = 2000.0
RATIO_TARGET = 20.0
EWS_STEPS = ("open", "inbox")


def peak_rss_kb(time_file):
    """Maximum resident set size (KiB) from GNU time -v output, or None."""
    try:
        text = time_file.read_text()
    except OSError:
        return None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(m.group(1)) if m else None


def cpu_seconds(time_file):
    """User plus system CPU seconds from GNU time -v output, or None."""
    try:
        text = time_file.read_text()
    except OSError:
        return None
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    system = re.search(r"System time \(seconds\): ([\d.]+)", text)
    if not user or not system:
        return None
    return float(user.group(1)) + float(system.group(1))


def cpu_ms_per(cpu, n):
    return "n/a" if cpu is None or n <= 0 else f"{cpu * 1000 / n:.2f} ms"


def load_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def mib(kb):
    return "n/a" if not kb else f"{kb / 1024:.0f} MiB"


def rate(n, seconds):
    return n / seconds if seconds > 0 else 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tmp", type=pathlib.Path, required=True)
    p.add_argument("--mailboxes", type=int, required=True)
    p.add_argument("--sample", type=int, required=True)
    p.add_argument("--exgate-rc", type=int, required=True)
    p.add_argument("--exgate-start", type=float, required=True)
    p.add_argument("--exgate-end", type=float, required=True)
    p.add_argument("--exchangelib-rc", type=int, required=True)
    p.add_argument("--exchangelib-start", type=float, required=True)
    p.add_argument("--exchangelib-end", type=float, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--emulator-hwm-kb", type=int, default=0)
    p.add_argument("--emulator-cpu-ticks", type=int, default=0)
    p.add_argument("--clock-ticks", type=int, default=100)
    p.add_argument("--load", default="")
    p.add_argument("--wan-ms", type=int, default=0)
    a = p.parse_args()
    tmp = a.tmp
    problems = []

    # exgate
    report = load_json(tmp / "exgate.json")
    ex_seconds = a.exgate_end - a.exgate_start
    ex_ok = ex_total = ex_requests = ex_sides = 0
    ex_internal = None
    if report is None:
        err = (tmp / "exgate.err").read_text(errors="replace")[-2000:] if (tmp / "exgate.err").exists() else ""
        problems.append(f"exgate verify (exit {a.exgate_rc}) wrote no JSON report:\n{err}")
    else:
        summary = report.get("summary", {})
        ex_total = summary.get("total", 0)
        ex_ok = summary.get("ok", 0)
        ex_internal = summary.get("duration_ms")
        for m in report.get("mailboxes", []):
            sides = set()
            for s in m.get("steps", []):
                if s.get("name") in EWS_STEPS:
                    ex_requests += int(s.get("attempts", 1))
                    sides.add(s.get("endpoint"))
            ex_sides += len(sides)
        if a.exgate_rc != 0 or ex_ok != a.mailboxes or ex_total != a.mailboxes:
            first = next((m for m in report.get("mailboxes", []) if not m.get("ok")), None)
            problems.append(
                f"exgate verify exit {a.exgate_rc}: {ex_ok} of {ex_total} mailboxes ok "
                f"(expected all {a.mailboxes}); first failure: {json.dumps(first)[:1500]}"
            )

    # exchangelib
    el = load_json(tmp / "exchangelib.json")
    el_process = a.exchangelib_end - a.exchangelib_start
    if el is None:
        err = (tmp / "exchangelib.err").read_text(errors="replace")[-2000:] if (tmp / "exchangelib.err").exists() else ""
        problems.append(f"exchangelib check (exit {a.exchangelib_rc}) printed no result:\n{err}")
        el = {}
    elif el.get("ok") != a.sample:
        problems.append(f"exchangelib: {el.get('ok')} of {el.get('mailboxes')} ok; first errors: {el.get('first_errors')}")
    el_seconds = float(el.get("seconds") or 0.0)
    el_mailboxes = int(el.get("mailboxes") or 0)
    el_requests = int(el.get("ews_requests") or 0)

    s0, s1, s2 = (load_json(tmp / f"stats{i}.json") or {} for i in range(3))
    ex_tokens = s1.get("token_requests", 0) - s0.get("token_requests", 0)
    el_tokens = s2.get("token_requests", 0) - s1.get("token_requests", 0)

    ex_rate = rate(a.mailboxes, ex_seconds)
    el_rate = rate(el_mailboxes, el_seconds)
    ex_rreq = rate(ex_requests, ex_seconds)
    el_rreq = rate(el_requests, el_seconds)
    ex_side_rate = rate(ex_sides, ex_seconds)
    ratio = ex_rate / el_rate if el_rate > 0 else 0.0
    ratio_req = ex_rreq / el_rreq if el_rreq > 0 else 0.0
    ratio_side = ex_side_rate / el_rate if el_rate > 0 else 0.0

    print("verify benchmark: one emulator (release, TLS, loopback), app-only EWS with impersonation")
    print()
    row = "{:<34} {:>16} {:>16}"
    print(row.format("", "exgate verify", "exchangelib"))
    print(row.format("parallelism", f"{a.concurrency} mailboxes", f"{a.threads} threads"))
    sample_note = " (sample)" if el_mailboxes < a.mailboxes else ""
    print(row.format("mailboxes (of the 10,000 set)", f"{a.mailboxes}", f"{el_mailboxes}{sample_note}"))
    print(row.format("mailbox checks (sides)", f"{ex_sides}", f"{el_mailboxes}"))
    print(row.format("ok", f"{ex_ok}", f"{el.get('ok', 0)}"))
    print(row.format("EWS requests", f"{ex_requests}", f"{el_requests}"))
    print(row.format("token requests", f"{ex_tokens}", f"{el_tokens}"))
    print(row.format("seconds", f"{ex_seconds:.2f}", f"{el_seconds:.2f}"))
    print(row.format("  (process wall / in-tool)", f"{ex_seconds:.2f} / {(ex_internal or 0) / 1000:.2f}", f"{el_process:.2f} / {el_seconds:.2f}"))
    print(row.format("mailboxes/s", f"{ex_rate:.0f}", f"{el_rate:.1f}"))
    print(row.format("mailbox checks/s", f"{ex_side_rate:.0f}", f"{el_rate:.1f}"))
    print(row.format("EWS requests/s", f"{ex_rreq:.0f}", f"{el_rreq:.1f}"))
    ex_cpu = cpu_seconds(tmp / "exgate.time")
    el_cpu = cpu_seconds(tmp / "exchangelib.time")
    print(row.format("CPU seconds (user + system)", f"{ex_cpu or 0:.2f}", f"{el_cpu or 0:.2f}"))
    print(row.format("CPU per mailbox", cpu_ms_per(ex_cpu, a.mailboxes), cpu_ms_per(el_cpu, el_mailboxes)))
    print(row.format("CPU per EWS request", cpu_ms_per(ex_cpu, ex_requests), cpu_ms_per(el_cpu, el_requests)))
    print(row.format("peak memory (RSS)", mib(peak_rss_kb(tmp / "exgate.time")), mib(peak_rss_kb(tmp / "exchangelib.time"))))
    print()
    cpu = a.emulator_cpu_ticks / a.clock_ticks if a.clock_ticks else 0
    if a.load:
        print(f"machine load average before the run (1/5/15 min): {a.load}")
    print(f"emulator: peak memory {mib(a.emulator_hwm_kb)}, CPU {cpu:.1f} s over both runs")
    print()
    print(f"ratio, mailboxes/s:       {ratio:.1f}x")
    print(f"ratio, mailbox checks/s:  {ratio_side:.1f}x  (a check is one mailbox on one side)")
    print(f"ratio, EWS requests/s:    {ratio_req:.1f}x")
    print()
    if problems:
        print("targets: not judged (a check failed, see below)")
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print("error: the rates above are meaningless while a tool's check fails", file=sys.stderr)
        return 1
    if a.wan_ms > 0:
        # The most a tool can do within the budget: every one of its parallel slots busy with a
        # request, each taking at least the added latency.
        wan = a.wan_ms / 1000.0

        def bound(slots, requests, mailboxes):
            per = requests / mailboxes if mailboxes else 0
            return slots / (per * wan) if per else 0.0

        ex_bound = bound(a.concurrency, ex_requests, a.mailboxes)
        el_bound = bound(a.threads, el_requests, el_mailboxes)
        ex_frac = ex_rate / ex_bound if ex_bound else 0.0
        el_frac = el_rate / el_bound if el_bound else 0.0
        print(f"WAN: {a.wan_ms} ms added to every request; budget {a.concurrency} (exgate) / {a.threads} (exchangelib) requests in flight")
        print(f"budget-bound rate, mailboxes/s: exgate {ex_bound:.0f}, exchangelib {el_bound:.0f}")
        print(f"fraction of the bound:          exgate {ex_frac:.0%}, exchangelib {el_frac:.0%}")
        print(f"target >= 90% of the budget-bound rate: {'met' if ex_frac >= 0.9 else 'NOT met'} ({ex_frac:.0%})")
        return 0
    print(f"target >= {RATIO_TARGET:.0f}x faster (mailboxes/s): {'met' if ratio >= RATIO_TARGET else 'NOT met'} ({ratio:.1f}x)")
    print(f"target > {EXGATE_TARGET_RATE:.0f} mailboxes/s:        {'met' if ex_rate > EXGATE_TARGET_RATE else 'NOT met'} ({ex_rate:.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
