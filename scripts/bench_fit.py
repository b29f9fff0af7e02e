#!/usr/bin/env python3
"""FIT decode + normalize throughput: pulsegate against the two Python decoders, in one run, on the
same files, reported as ratios against the faster Python decoder measured here and now.

pulsegate is measured in-process with `pulsegate fit bench` (the release binary decodes each file
--iterations times into canonical samples; process start-up and output are excluded). The Python
decoders do the equivalent work: fitdecode iterates every frame and reads the mapped record fields;
garmin-fit-sdk's Decoder.read() (scale/offset, components, hr merge) and then reads the same fields.
Each side reports its best run. Peak memory is the max RSS of a whole `pulsegate fit decode` of the
2.4 MB file (NDJSON to /dev/null), and of each Python decoder doing the same file.

Usage:
    swift build -c release --product pulsegate
    .build/e2e-venv/bin/python scripts/bench_fit.py [--bin .build/release/pulsegate] [--check] [FILE...]

--check [samples|records] exits 1 unless that pulsegate path reaches 100 MB/s on the 2.4 MB file and
50x the faster Python decoder on every file. Three pulsegate paths are reported: samples (canonical
samples, each validated and given its SHA-256 id by PulseGateCore's Sample.init: what `fit decode` and
the vendor adapters pay), records (typed records in physical units: the work the Python decoders do),
and the bare message walk. Needs `pip install fitdecode garmin-fit-sdk` (Tests/e2e/requirements.txt lists both;
the script installs them into its own interpreter's environment when they are missing).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "PulseGateFITTests" / "Fixtures"
BIG = "bryton-big-activity-100k-records.fit"
DEFAULT_FILES = [
    BIG,
    "wahoo-elemnt-2019-02-17.fit",
    "garmin-edge530-tacx-saris-wahoo.fit",
    "coros-pace2-misaligned-fields.fit",
    "garmin-fr735xt-chained-5.fit",
    "stryd-developer-types.fit",
]
FIELDS = ("heart_rate", "power", "cadence", "speed", "enhanced_speed", "distance", "altitude",
          "enhanced_altitude", "position_lat", "position_long", "temperature")


def ensure_python_decoders():
    if importlib.util.find_spec("fitdecode") is None or importlib.util.find_spec("garmin_fit_sdk") is None:
        print("bench: installing fitdecode and garmin-fit-sdk into", sys.prefix, file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "fitdecode", "garmin-fit-sdk"],
                       check=True)


# Python work, also run as `python bench_fit.py --python-worker LIB FILE` for the RSS measurement.
def run_fitdecode(data: bytes) -> int:
    import fitdecode
    n = 0
    with fitdecode.FitReader(data, check_crc=fitdecode.CrcCheck.RAISE) as fr:
        for frame in fr:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "record":
                for f in FIELDS:
                    if frame.get_value(f, fallback=None) is not None:
                        n += 1
    return n


def run_garmin(data: bytes) -> int:
    from garmin_fit_sdk import Decoder, Stream
    messages, errors = Decoder(Stream.from_byte_array(bytearray(data))).read()
    if errors:
        raise RuntimeError(errors[0])
    n = 0
    for record in messages.get("record_mesgs", []):
        for f in FIELDS:
            if record.get(f) is not None:
                n += 1
    return n


PYTHON = {"fitdecode": run_fitdecode, "garmin-fit-sdk": run_garmin}


def best_time(fn, data: bytes, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - t0)
    return best


def max_rss_kb(argv: list[str]) -> int:
    """Peak resident set of one process, in KiB.

    Measured by GNU time, which forks the process from itself: a child forked from this Python
    process would report at least this process's own peak (Linux keeps the high-water mark across
    exec), and by the time this runs the Python decoders have grown it to ~90 MB.
    """
    gnu_time = Path("/usr/bin/time")
    if not gnu_time.is_file():
        raise RuntimeError("/usr/bin/time (GNU time) is needed for the memory figure: apt-get install time")
    with open(os.devnull, "wb") as null:
        p = subprocess.run([str(gnu_time), "-f", "%M", *argv], stdout=null, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return int(p.stderr.strip().splitlines()[-1])


def swift_bench(binary: Path, files: list[Path], iterations: int) -> dict[str, dict]:
    p = subprocess.run([str(binary), "fit", "bench", "--iterations", str(iterations), *map(str, files)],
                       capture_output=True, text=True, check=True)
    out = {}
    for line in p.stdout.splitlines():
        row = json.loads(line)
        out[Path(row["file"]).name] = row
    return out


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--python-worker":
        PYTHON[sys.argv[2]](Path(sys.argv[3]).read_bytes())
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=ROOT / ".build" / "release" / "pulsegate")
    parser.add_argument("--iterations", type=int, default=20, help="pulsegate decodes per file")
    parser.add_argument("--python-runs", type=int, default=3, help="Python decodes per file (small files)")
    parser.add_argument("--check", nargs="?", const="samples", choices=["samples", "records"],
                        help="fail unless the goals are met on the sample path (default) or the record path")
    parser.add_argument("files", nargs="*", help=f"fixture names or paths (default: {len(DEFAULT_FILES)} files)")
    args = parser.parse_args()
    if not args.bin.is_file():
        print(f"bench: {args.bin} missing; run: swift build -c release --product pulsegate", file=sys.stderr)
        return 2
    ensure_python_decoders()
    files = [Path(f) if Path(f).exists() else FIXTURES / f for f in (args.files or DEFAULT_FILES)]

    swift = swift_bench(args.bin, files, args.iterations)
    rows = []
    for path in files:
        data = path.read_bytes()
        mb = len(data) / 1e6
        runs = 1 if len(data) > 1_000_000 else args.python_runs
        py = {name: mb / best_time(fn, data, runs) for name, fn in PYTHON.items()}
        s = swift[path.name]
        fastest = max(py, key=py.get)
        rows.append({
            "file": path.name, "bytes": len(data), "samples": s["samples"],
            "pulsegate_mb_s": s["mb_per_s"], "pulsegate_median_mb_s": s["median_mb_per_s"],
            "pulsegate_samples_s": s["samples_per_s"], "pulsegate_records_mb_s": s["records_mb_per_s"],
            "pulsegate_walk_mb_s": s["walk_mb_per_s"],
            **{f"{name}_mb_s": v for name, v in py.items()},
            "faster_python": fastest, "ratio": s["mb_per_s"] / py[fastest],
            "records_ratio": s["records_mb_per_s"] / py[fastest],
        })

    big = FIXTURES / BIG
    rss = {"pulsegate": max_rss_kb([str(args.bin), "fit", "decode", str(big)])}
    for name in PYTHON:
        rss[name] = max_rss_kb([sys.executable, __file__, "--python-worker", name, str(big)])

    print("MB/s; ratio = pulsegate / the faster Python decoder, same run. samples: canonical samples with ids;")
    print("records: typed records in physical units (what the Python decoders produce); walk: messages only.")
    print(f"{'file':42} {'MB':>5} {'samples':>8} {'samples/s':>10} {'records':>8} {'walk':>6} "
          f"{'fitdecode':>9} {'garmin':>7} {'ratio':>6} {'rec ratio':>9}")
    for r in rows:
        print(f"{r['file']:42} {r['bytes'] / 1e6:5.2f} {r['pulsegate_mb_s']:8.1f} "
              f"{r['pulsegate_samples_s'] / 1e6:9.2f}M {r['pulsegate_records_mb_s']:8.1f} "
              f"{r['pulsegate_walk_mb_s']:6.0f} {r['fitdecode_mb_s']:9.3f} {r['garmin-fit-sdk_mb_s']:7.3f} "
              f"{r['ratio']:5.0f}x {r['records_ratio']:8.0f}x")
    print(f"max RSS decoding {BIG}: " + ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in rss.items()))
    print(json.dumps({"rows": rows, "max_rss_kb": rss}))

    if args.check:
        big_row = next((r for r in rows if r["file"] == BIG), None)
        key = "pulsegate_records_mb_s" if args.check == "records" else "pulsegate_mb_s"
        ratio = "records_ratio" if args.check == "records" else "ratio"
        ok = all(r[ratio] >= 50 for r in rows) and (big_row is None or big_row[key] >= 100)
        if not ok:
            print("bench: goals not met (>= 100 MB/s on the 2.4 MB file, >= 50x the faster Python decoder)",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
