#!/usr/bin/env python3
"""test_report.py RUNNER [KEEP_DIR] - bench/run's outputs stand on their own (ctest bench.report).

Writes fake per-run records (runs/*.json: lock ping-pong, barrier, false sharing and matmul
results; no Jacobi, no fault latency) into a scratch directory, runs `bench/run --report` on
them, and checks that:
  - results.md names no source outside the repository (no workspace file, no issue number)
    and points at docs/peer-numbers.md and docs/performance.md instead;
  - the floor and peer figures come from docs/peer-numbers.md (lock handoff peer 28.1);
  - the application plot draws the peer's matmul bars (own matmul data) but none for Jacobi
    (no own Jacobi data), and says "measured elsewhere";
  - lock handoff, barrier and false sharing each get a plot (when gnuplot is installed), whose
    peer bars are labelled as measured elsewhere.
No DSM run: the records are made up, so this takes a second.
"""
import json
import shutil
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


def main():
    runner = sys.argv[1]
    failures = []
    with tempfile.TemporaryDirectory() as d:
        if len(sys.argv) > 2:
            d = sys.argv[2]  # keep the outputs (for looking at the plots)
            Path(d).mkdir(parents=True, exist_ok=True)
        out = Path(d)
        (out / "runs").mkdir()
        for rep in (1, 2):
            for run, results in RESULTS.items():
                name = run.split("-")[0]
                rec = {
                    "run": run, "program": name, "rep": rep, "reps": 2, "nodes": 2,
                    "quick": False, "ok": True, "wall_s": 1.0, "exit_status": 0,
                    "loadavg_before": [0.1, 0.1, 0.1], "cpu_busy_before": 0.01,
                    "started": f"2026-01-01T00:00:0{rep}", "samples_file": None,
                    "environment": {"kernel": "test", "cpu_count": 2, "cpu_model": "test",
                                    "git_commit": "0" * 40, "git_dirty": False,
                                    "build_type": "RelWithDebInfo", "argv": ["bench/run"]},
                    "results": [{"name": name, "variant": v, "value": val * (1 + rep / 10),
                                 "unit": "us"} for v, val in results],
                    "stats": [], "info": [],
                }
                (out / "runs" / f"{run}.rep{rep}.json").write_text(json.dumps(rec))
        p = subprocess.run([sys.executable, runner, "--report", str(out)], capture_output=True,
                           text=True, timeout=120)
        if p.returncode != 0:
            print(p.stdout, p.stderr)
            print("test_report: FAILED: bench/run --report exited", p.returncode)
            return 1
        md = (out / "results.md").read_text()
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
    for f in failures:
        print("test_report: FAILED: " + f)
    if not failures:
        print("test_report: results.md and plots name only sources in the repository: ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
