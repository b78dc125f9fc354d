#!/usr/bin/env python3
"""test_report.py RUNNER [KEEP_DIR] - bench/run's outputs stand on their own (ctest bench.report).

Writes fake per-run records (runs/*.json: lock ping-pong, barrier, false sharing and matmul
results; no Jacobi, no fault latency) into a scratch directory (KEEP_DIR/sc), runs
`bench/run --report` on them, and checks that:
  - results.md names no source outside the repository (no workspace file, no issue number)
    and points at docs/peer-numbers.md and docs/performance.md instead;
  - the floor and peer figures come from docs/peer-numbers.md (lock handoff peer 28.1);
  - the application plot draws the peer's matmul bars (own matmul data) but none for Jacobi
    (no own Jacobi data), and says "measured elsewhere";
  - lock handoff, barrier and false sharing each get a plot (when gnuplot is installed), whose
    peer bars are labelled as measured elsewhere;
  - with records of sc alone, the table keeps its one median column (no rc/sc);
  - the kernels report's ratio is rc/sc too (kernel_tables on two made-up records).
Then the same records twice, as `bench/run --protocols sc,rc` writes them (KEEP_DIR/sc-rc:
each DSM run under sc and under rc with other values, the serial run once), and checks that
results.md sets the sc and rc medians side by side with their ratio rc/sc, each the median of
its own protocol's records, that summary.json keys every result by its protocol, and that
the bar and application plots draw both protocols.
No DSM run: the records are made up, so this takes a second.
"""
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = {
    "lockpp": [("handoff", 50.0)],
    "barrier": [("empty", 11.0), ("dirty", 12.0)],
    "falseshare": [("k1", 50.0), ("k16", 43.0), ("k256", 44.0)],
    "matmul-local": [("local", 57.0)],
    "matmul-serial": [("serial", 90.0)],
}
SERIAL = ("matmul-serial",)
# The made-up rc records: each sc value times this, so that a median drawn from the wrong
# protocol's records, or from both, shows in the table.
RC_FACTOR = 0.5


def value(val, proto, rep):
    """The made-up value of a result in one record."""
    return val * (RC_FACTOR if proto == "rc" else 1.0) * (1 + rep / 10)


def median_text(val, proto):
    """The median of a result's two records, as bench/run's table writes it."""
    v = statistics.median(value(val, proto, rep) for rep in (1, 2))
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def write_records(out, protocols):
    """runs/*.json as bench/run writes them; with protocols, each record says its own, the
    serial one none."""
    (out / "runs").mkdir(parents=True)
    for rep in (1, 2):
        for run, results in RESULTS.items():
            name = run.split("-")[0]
            for proto in ([None] if run in SERIAL or not protocols else protocols):
                rec = {
                    "run": run, "program": name, "rep": rep, "reps": 2, "nodes": 2,
                    "quick": False, "ok": True, "wall_s": 1.0, "exit_status": 0,
                    "loadavg_before": [0.1, 0.1, 0.1], "cpu_busy_before": 0.01,
                    "started": f"2026-01-01T00:00:0{rep}", "samples_file": None,
                    "environment": {"kernel": "test", "cpu_count": 2, "cpu_model": "test",
                                    "git_commit": "0" * 40, "git_dirty": False,
                                    "build_type": "RelWithDebInfo", "argv": ["bench/run"]},
                    "results": [{"name": name, "variant": v, "value": value(val, proto, rep),
                                 "unit": "us"} for v, val in results],
                    "stats": [], "info": [],
                }
                if protocols:
                    rec["protocol"] = proto
                stem = run if proto in (None, "sc") else f"{run}.{proto}"
                (out / "runs" / f"{stem}.rep{rep}.json").write_text(json.dumps(rec))


def report(runner, out):
    """bench/run --report OUT; results.md, or None (after saying why) if it failed."""
    p = subprocess.run([sys.executable, runner, "--report", str(out)], capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        print("test_report: FAILED: bench/run --report exited", p.returncode)
        return None
    return (out / "results.md").read_text()


def cells(md, what):
    """The cells of the table row whose workload names `what` ([] if there is none)."""
    row = [l for l in md.splitlines() if l.startswith("|") and what in l]
    return [c.strip() for c in row[0].strip().strip("|").split("|")] if row else []


def check_protocols(out, md, failures):
    """The two-protocol report: columns, medians of the right records, ratio, summary, plots."""
    head = cells(md, "workload")
    want = ["sc median", "rc median", "rc/sc"]
    if head[2:5] != want:
        failures.append(f"two-protocol table head has {head[2:5]}, not {want}: {head}")
        return
    for what, val in (("barrier, empty", 11.0), ("lock ping-pong", 50.0),
                      ("false sharing, K=16", 43.0), ("rows homed locally", 57.0)):
        row = cells(md, what)
        want = [median_text(val, "sc"), median_text(val, "rc"), f"{RC_FACTOR:.2f}"]
        if row[2:5] != want:
            failures.append(f"row '{what}': sc, rc, rc/sc are {row[2:5]}, expected {want}: {row}")
    # The serial reference ran under no protocol: the same figure in both, no ratio.
    row = cells(md, "matmul 512, serial reference")
    want = [median_text(90.0, None)] * 2 + ["—"]
    if row[2:5] != want:
        failures.append(f"serial row: sc, rc, rc/sc are {row[2:5]}, expected {want}: {row}")
    # The targets judge sc alone: barrier empty (target <= 5) misses by 12.65 / 5.
    row = cells(md, "barrier, empty")
    if not row or "**no** (2.5x)" not in row[-1]:
        failures.append(f"barrier row does not judge the target on sc (2.5x): {row}")
    summary = json.loads((out / "summary.json").read_text())
    got = {(r["name"], r["variant"], r["protocol"]): r["median"] for r in summary["results"]}
    for key, val in ((("barrier", "empty", "sc"), 11.0), (("barrier", "empty", "rc"), 11.0),
                     (("matmul", "serial", None), 90.0)):
        v = statistics.median(value(val, key[2], rep) for rep in (1, 2))
        if key not in got or abs(got[key] - v) > 1e-9:
            failures.append(f"summary.json: {key} is {got.get(key)}, expected {v}")
    if summary["config"].get("protocols") != ["sc", "rc"]:
        failures.append(f"summary.json config protocols: {summary['config'].get('protocols')}")
    if len(summary["results"]) != len({(r["name"], r["variant"], r["protocol"])
                                       for r in summary["results"]}):
        failures.append("summary.json holds a result twice (the serial one under each protocol?)")
    if shutil.which("gnuplot"):
        for name, label in (("barrier", "empty rc"), ("apps", "ufdsm rows local rc")):
            dat = out / "plot" / f"{name}.dat"
            text = dat.read_text() if dat.exists() else ""
            if label not in text:
                failures.append(f"{name}.dat has no rc bar ('{label}'):\n{text}")
            gp = out / "plot" / f"{name}.gp"
            if gp.exists() and "ufdsm rc" not in gp.read_text():
                failures.append(f"{name}.gp has no series titled 'ufdsm rc'")


def check_kernel_ratio(runner, failures):
    """The kernels report's third table says rc/sc, as the workloads' table does: rc's median
    over sc's, so that below 1 always means rc is faster."""
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader("bench_run", runner)
    spec = importlib.util.spec_from_loader("bench_run", loader)
    run = importlib.util.module_from_spec(spec)
    loader.exec_module(run)
    recs = [{"kernel": "radix", "build": "dsm", "protocol": proto, "procs": 2, "ok": True,
             "seconds": secs, "timed_out": False, "results": [{"size": 1}]}
            for proto, secs in (("sc", 4.0), ("rc", 1.0))]
    md = run.kernel_tables(run.kernel_summary(recs), [2], [1])
    part = md[md.index("rc/sc"):] if "rc/sc" in md else ""
    row = [l for l in part.splitlines() if l.startswith("| radix")]
    if not row or "0.25" not in row[0]:
        failures.append(f"kernels report: rc 1 s over sc 4 s should read rc/sc 0.25: {row}")


def main():
    runner = sys.argv[1]
    failures = []
    with tempfile.TemporaryDirectory() as d:
        if len(sys.argv) > 2:
            d = sys.argv[2]  # keep the outputs (for looking at the plots)
            Path(d).mkdir(parents=True, exist_ok=True)
        out = Path(d) / "sc"
        write_records(out, None)  # as written before --protocols: no protocol in them
        md = report(runner, out)
        if md is None:
            return 1
        if "rc/sc" in md or "rc median" in md or cells(md, "workload")[2:3] != ["ufdsm median"]:
            failures.append("a report of sc alone has a per-protocol table, not the one it had: "
                            f"{cells(md, 'workload')}")
        for bad in ("shared/facts", "workspace", "floors.md", "issue"):
            if bad.lower() in md.lower():
                failures.append(f"results.md names '{bad}', a source readers do not have")
        for good in ("docs/peer-numbers.md", "docs/performance.md", "measured elsewhere"):
            if good not in md:
                failures.append(f"results.md does not point at '{good}'")
        row = [l for l in md.splitlines() if "lock ping-pong" in l]
        if not row or "28.1" not in row[0] or "6.8†" not in row[0]:
            failures.append(f"lock handoff row lacks the peer 28.1 / floor 6.8† of "
                            f"docs/peer-numbers.md: {row}")
        apps = (out / "plot" / "apps.dat")
        if apps.exists() or shutil.which("gnuplot"):
            text = apps.read_text() if apps.exists() else ""
            if "peer rows local" not in text:
                failures.append("apps.dat has no peer bar beside this run's matmul data")
            if "Jacobi" in text or text.count("peer") > 3:
                failures.append("apps.dat draws peer bars for Jacobi, which this run has no "
                                f"data for:\n{text}")
        if shutil.which("gnuplot"):
            for name in ("lockpp", "barrier", "falseshare", "apps"):
                if not (out / f"{name}.png").exists() or (out / f"{name}.png").stat().st_size == 0:
                    failures.append(f"{name}.png was not drawn")
                gp = out / "plot" / f"{name}.gp"
                if gp.exists() and "peer" in gp.read_text() and \
                        "measured elsewhere" not in gp.read_text():
                    failures.append(f"{name}.gp draws peer bars not labelled measured elsewhere")
        else:
            print("test_report: gnuplot not found: plots not checked (apt-get install gnuplot-nox)")

        both = Path(d) / "sc-rc"
        write_records(both, ["sc", "rc"])
        md = report(runner, both)
        if md is None:
            return 1
        check_protocols(both, md, failures)
    check_kernel_ratio(runner, failures)
    for f in failures:
        print("test_report: FAILED: " + f)
    if not failures:
        print("test_report: results.md and plots name only sources in the repository, and "
              "set sc and rc side by side: ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
