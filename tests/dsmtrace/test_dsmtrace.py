#!/usr/bin/env python3
"""test_dsmtrace.py - tests tools/dsmtrace on synthetic trace files with known answers.

The files are written here in the DSM_TRACE format of docs/tracing.md (not by the runtime),
so the expected summary is known exactly:
  page 7   the hottest page: 40 read misses on node 1, each served by node 0
  page 10  true-sharing ping-pong: nodes 0 and 1 take turns writing offset 0 (11 write
           faults, 10 alternations); not a false-sharing suspect (same offsets)
  page 20  false sharing: node 0 writes bytes 0..2047, node 1 bytes 2048..4095, taking turns
           (8 write faults, 7 alternations)
  page 30  written by both nodes at overlapping offsets, one handover only: neither list
  page 40  written by one node only: neither list
Allocation records (kind 9) name the pages: a block dsm_alloc of pages 0-31 recorded by both
nodes (one allocation), an RC allocation of pages 32-47 homed on node 1, and a dsm_malloc of
pages 100-103 on node 1 (outside the pages with events). Records are appended in per-thread
batches out of time order, with two threads per node, as the runtime does. Also: a file truncated mid-record (warning, partial record ignored), a bad
magic and a bad version (clear error, exit 1), files of different runs (exit 1), the text
summary, dump, and the heat map (when gnuplot is installed): a PNG, and its gnuplot script
(--script) has a legend entry per node with a marker of its own, integer page ticks, the
rarest event kind drawn last, and the allocations' labels on the pages they hold.

Usage: test_dsmtrace.py [PATH_OF_DSMTRACE]   (default: tools/dsmtrace of this checkout)
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

TOOL = Path(sys.argv[1]) if len(sys.argv) > 1 else \
    Path(__file__).resolve().parents[2] / "tools" / "dsmtrace"
HEADER = struct.Struct("<8sIIIIQQQI12s")
RECORD = struct.Struct("<QQIIHHHBB")
BASE, PAGE, SIZE, T0 = 0x500000000000, 4096, 256 << 20, 1_000_000_000
READ_MISS, WRITE_MISS, UPGRADE, INVALIDATED, RECALLED, SERVED = 1, 2, 3, 4, 5, 6
ALLOC, FLAG_RC, FLAG_MALLOC = 9, 2, 4
NONE = 0xFFFF


def header(rank, nodes=2, magic=b"UFDSMTR1", version=1, base=BASE):
    return HEADER.pack(magic, version, rank, nodes, PAGE, base, SIZE, T0, 32, bytes(12))


def rec(t_us, page, kind, service_us=0, tid=100, offset=0, peer=NONE, msgs=0, write=False):
    return (T0 + int(t_us * 1000), page, int(service_us * 1000), tid, offset, peer, msgs, kind,
            1 if write else 0)


def scenario():
    """{node: [record tuples]} for the pages described in the module comment."""
    ev = {0: [], 1: []}
    t = 10.0
    # page 7: the hottest. Node 1 reads it 40 times (node 0 invalidates it in between,
    # which node 1 records), node 0 serves each read.
    for i in range(40):
        ev[1].append(rec(t, 7, READ_MISS, service_us=20 + i, tid=201, offset=8, peer=0, msgs=1))
        ev[0].append(rec(t + 5, 7, SERVED, tid=101, peer=1, msgs=1))
        t += 30
    # page 10: true sharing ping-pong, offset 0 on both nodes, 11 write faults.
    for i in range(11):
        node = i % 2
        kind = WRITE_MISS if i < 2 else UPGRADE
        ev[node].append(rec(t, 10, kind, service_us=50, tid=100 + 100 * node + 2, offset=0,
                            peer=0 if node else 1, msgs=1, write=True))
        t += 40
    # page 20: false sharing, node 0 in the lower half, node 1 in the upper half.
    for i in range(8):
        node = i % 2
        off = (64 * i) if node == 0 else (2048 + 64 * i)
        ev[node].append(rec(t, 20, WRITE_MISS, service_us=60, tid=100 + 100 * node + 2,
                            offset=off, peer=1 - node, msgs=1, write=True))
        t += 40
    # page 30: both write, overlapping offsets, ownership changes hands once.
    for node, offs in ((0, (100, 300, 500)), (1, (200, 400, 600))):
        for off in offs:
            ev[node].append(rec(t, 30, WRITE_MISS, service_us=30, tid=100 + 100 * node + 1,
                                offset=off, peer=1 - node, msgs=1, write=True))
            t += 10
    # page 40: one writer.
    for i in range(5):
        ev[0].append(rec(t, 40, WRITE_MISS, service_us=30, tid=101, offset=8 * i, peer=1,
                         msgs=1, write=True))
        t += 10
    return ev


def alloc_records():
    """{node: [ALLOC records]}: service_ns carries the page count, offset the policy, peer the
    home (DSM_PLACE_NODE) or the node (dsm_malloc)."""
    a = {0: [], 1: []}
    for node in (0, 1):  # collective: every node records it
        a[node].append((T0 + 1000, 0, 32, 100 + 100 * node, 0, NONE, 0, ALLOC, 0))
        a[node].append((T0 + 2000, 32, 16, 100 + 100 * node, 2, 1, 0, ALLOC, FLAG_RC))
    a[1].append((T0 + 3000, 100, 4, 201, 0, 1, 0, ALLOC, FLAG_MALLOC))
    return a


def write_trace(path, rank, records, extra=b""):
    """Appends the records in per-thread batches of 7, each batch's thread's events in time
    order but the batches interleaved out of order, as per-thread buffers are flushed."""
    by_tid = {}
    for r in records:
        by_tid.setdefault(r[3], []).append(r)
    batches = [rs[i:i + 7] for rs in by_tid.values() for i in range(0, len(rs), 7)]
    batches.reverse()
    with open(path, "wb") as f:
        f.write(header(rank))
        for b in batches:
            for r in b:
                f.write(RECORD.pack(*r))
        f.write(extra)


class DsmtraceTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="dsmtrace-test.")
        self.ev = scenario()
        self.files = []
        allocs = alloc_records()
        for node, rs in self.ev.items():
            p = os.path.join(self.dir, f"trace.{node}")
            write_trace(p, node, rs + allocs[node])
            self.files.append(p)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_tool(self, *args, ok=True):
        p = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                           timeout=60)
        if ok:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def summary(self, *files):
        return json.loads(self.run_tool("summary", "--json", *(files or self.files)).stdout)

    def test_counts_and_service_times(self):
        s = self.summary()
        self.assertEqual(s["nodes"], 2)
        self.assertEqual(s["events"], sum(len(v) for v in self.ev.values()))
        rows = {(d["node"], d["kind"]): d for d in s["per_node_kind"]}
        rm = rows[(1, "read_miss")]
        self.assertEqual(rm["count"], 40)
        self.assertEqual(rm["msgs"], 40)
        # service times 20..59 us: nearest-rank p50 = 39 us (20th), p99 = 59 us (40th).
        self.assertAlmostEqual(rm["service_p50_us"], 39.0)
        self.assertAlmostEqual(rm["service_p99_us"], 59.0)
        self.assertEqual(rows[(0, "served")]["count"], 40)
        self.assertIsNone(rows[(0, "served")]["service_p50_us"])  # not a fault kind
        # page 10: write faults 2..10 are upgrades, the even ones on node 0.
        self.assertEqual(rows[(0, "upgrade")]["count"], 5)
        self.assertEqual(rows[(1, "upgrade")]["count"], 4)

    def test_hottest_page(self):
        s = self.summary()
        hot = s["hottest"][0]
        self.assertEqual(hot["page"], 7)
        self.assertEqual(hot["events"], 80)
        self.assertEqual(hot["addr"], hex(BASE + 7 * PAGE))
        self.assertEqual(hot["by_kind"], {"read_miss": 40, "served": 40})

    def test_pingpong(self):
        pp = {d["page"]: d for d in self.summary()["pingpong"]}
        self.assertEqual(pp[10]["alternations"], 10)
        self.assertEqual(pp[10]["write_faults"], 11)
        self.assertEqual(pp[20]["alternations"], 7)
        self.assertNotIn(30, pp)  # one handover is not ping-pong
        self.assertNotIn(40, pp)
        self.assertEqual(self.summary()["pingpong"][0]["page"], 10)  # most alternations first

    def test_false_sharing(self):
        fs = {d["page"]: d for d in self.summary()["false_sharing"]}
        self.assertEqual(set(fs), {20})
        self.assertEqual(fs[20]["offsets"], {"0": [0, 384], "1": [2112, 2496]})

    def test_text_summary(self):
        out = self.run_tool("summary", *self.files).stdout
        self.assertIn("hottest pages", out)
        self.assertRegex(out, r"page +7 \(0x500000007000\): 80 events")
        self.assertRegex(out, r"page +10 .*10 alternations")
        self.assertRegex(out, r"page +20 .*node 0 bytes 0-384, node 1 bytes 2112-2496")

    def test_dump_is_time_ordered(self):
        lines = self.run_tool("dump", *self.files).stdout.splitlines()
        # Comment lines first: the allocations, then the column names.
        self.assertIn("# allocation #1 dsm_alloc, block, 32 pages: pages 0-31", lines)
        out = [l for l in lines if not l.startswith("#")]
        times = [float(l.split()[0]) for l in out]
        self.assertEqual(len(times), sum(len(v) for v in self.ev.values()))
        self.assertEqual(times, sorted(times))

    def test_truncated_file(self):
        p = os.path.join(self.dir, "trunc.1")
        write_trace(p, 1, self.ev[1], extra=RECORD.pack(*self.ev[1][0])[:13])
        r = self.run_tool("summary", "--json", self.files[0], p)
        self.assertIn("partial record", r.stderr)
        s = json.loads(r.stdout)
        self.assertEqual(s["events"], sum(len(v) for v in self.ev.values()))

    def test_bad_magic_and_version(self):
        for name, hdr, want in (("magic", header(0, magic=b"NOTATRCE"), "bad magic"),
                                ("version", header(0, version=7), "version 7")):
            p = os.path.join(self.dir, name)
            with open(p, "wb") as f:
                f.write(hdr)
            r = self.run_tool("summary", p, ok=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn(want, r.stderr)
            self.assertNotIn("Traceback", r.stderr)

    def test_files_of_different_runs(self):
        p = os.path.join(self.dir, "other.1")
        with open(p, "wb") as f:
            f.write(HEADER.pack(b"UFDSMTR1", 1, 1, 2, PAGE, BASE + PAGE, SIZE, T0, 32, bytes(12)))
        r = self.run_tool("summary", self.files[0], p, ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("different runs", r.stderr)

    def test_allocations(self):
        s = self.summary()
        self.assertEqual([a["label"] for a in s["allocations"]], [
            "#1 dsm_alloc, block, 32 pages",
            "#2 dsm_alloc, homed on node 1, rc, 16 pages",
            "#3 dsm_malloc on node 1, 4 pages"])
        hot = {d["page"]: d for d in s["hottest"]}
        self.assertEqual(hot[7]["allocation"], "#1 dsm_alloc, block, 32 pages")
        self.assertEqual(hot[40]["allocation"], "#2 dsm_alloc, homed on node 1, rc, 16 pages")
        # Allocation records are labels, not coherence events.
        self.assertNotIn("alloc", {d["kind"] for d in s["per_node_kind"]})
        self.assertIn("[#1 dsm_alloc, block, 32 pages]", self.run_tool("summary", *self.files).stdout)

    @unittest.skipUnless(shutil.which("gnuplot"), "gnuplot not installed")
    def test_heatmap_layout(self):
        png = os.path.join(self.dir, "heat.png")
        gp = os.path.join(self.dir, "heat.gp")
        self.run_tool("heatmap", *self.files, "-o", png, "--script", gp)
        script = open(gp).read()
        # A legend entry per node, each node with its own marker.
        markers = {}
        for node in (0, 1):
            m = re.search(rf"pt (\d+) ps [0-9.]+ lc rgb '#333333' title 'node {node} ", script)
            self.assertIsNotNone(m, f"no legend entry for node {node}:\n{script}")
            markers[node] = m.group(1)
        self.assertNotEqual(markers[0], markers[1])
        # Integer page ticks over pages 7..40.
        m = re.search(r"set ytics (-?\d+), (\d+) format '%\.0f'", script)
        self.assertIsNotNone(m, f"page ticks are not integers:\n{script}")
        self.assertGreaterEqual(int(m.group(2)), 1)
        # Layers: point series in decreasing frequency, so the rarest kind (upgrade: 9
        # points) is drawn last, over the common ones (read miss, served: 40 each).
        colours = re.findall(r"with points pt \d+ ps 0\.5 lc rgb '(#[0-9a-f]+)' notitle", script)
        self.assertTrue(colours, script)
        self.assertEqual(colours[0], "#1f77b4")  # read miss
        self.assertEqual(colours[-1], "#ff7f0e")  # upgrade
        # Allocation labels on the pages they hold; the dsm_malloc (pages 100-103, no
        # events) is outside the plot and not labelled.
        self.assertIn("#1 dsm_alloc, block, 32 pages", script)
        self.assertIn("#2 dsm_alloc, homed on node 1, rc, 16 pages", script)
        self.assertNotIn("dsm_malloc", script)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    @unittest.skipUnless(shutil.which("gnuplot"), "gnuplot not installed")
    def test_heatmap(self):
        png = os.path.join(self.dir, "heat.png")
        self.run_tool("heatmap", *self.files, "-o", png)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
