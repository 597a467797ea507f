"""``python -m benchmarks`` (``make bench``): run every benchmarks/bench_*.py and report.

Each benchmark module exposes ``run(quick: bool = False) -> list[dict]`` whose rows have the keys
``name, studio, bare, unit, ratio, goal, met, notes`` (see benchmarks/README.md). This runner prints
them as an aligned table and writes benchmarks/results/latest.json plus a time-stamped copy.

A missed goal never fails the run (benchmarks are measurements, not tests); the exit code is 1 only
when a benchmark module itself crashed, so that broken benchmarks get noticed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COLUMNS = ("name", "studio", "bare", "unit", "ratio", "goal", "met")
ROW_KEYS = (*COLUMNS, "notes")


def discover(only: Sequence[str] = ()) -> list[str]:
    """Benchmark module names (``bench_x``), filtered by ``only`` (``x`` or ``bench_x``)."""
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if not only:
        return names
    wanted = {o if o.startswith("bench_") else f"bench_{o}" for o in only}
    unknown = wanted - set(names)
    if unknown:
        raise SystemExit(
            f"benchmarks: no benchmark {', '.join(sorted(unknown))}; "
            f"available: {', '.join(n.removeprefix('bench_') for n in names)}"
        )
    return [n for n in names if n in wanted]


def normalize_row(row: dict[str, Any], module: str) -> dict[str, Any]:
    """Fill what a benchmark left out (ratio from studio/bare) and keep the documented keys."""
    out = {key: row.get(key) for key in ROW_KEYS}
    out["name"] = str(out["name"] or module)
    studio, bare = out["studio"], out["bare"]
    if out["ratio"] is None and isinstance(studio, int | float) and isinstance(bare, int | float):
        out["ratio"] = float(studio) / float(bare) if _number(bare) and bare else None
    out["met"] = bool(out["met"])
    out["notes"] = str(out["notes"] or "")
    out["goal"] = str(out["goal"] or "")
    out["unit"] = str(out["unit"] or "")
    out["benchmark"] = module.removeprefix("bench_")
    extra = {k: v for k, v in row.items() if k not in ROW_KEYS}
    if extra:
        out["extra"] = extra
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Any) -> str:
    """Numbers with 4 significant digits, booleans as yes/no, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """The aligned text table of the results (numbers right-aligned)."""
    cells = [list(COLUMNS)] + [[fmt(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    numeric = {"studio", "bare", "ratio"}
    lines = []
    for n, row in enumerate(cells):
        parts = [
            cell.rjust(w) if COLUMNS[i] in numeric and n else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where the numbers were taken (versions read from metadata: nothing heavy imported)."""
    versions: dict[str, str | None] = {}
    for dist in ("aigc-studio", "torch", "diffusers", "transformers", "peft", "accelerate"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        # 1, 5, 15-minute load averages when the run started: other work on the machine
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def run_all(names: Sequence[str], quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Run the benchmark modules; a crash is recorded and the others still run."""
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            produced = module.run(quick=quick)
            rows.extend(normalize_row(dict(r), name) for r in produced)
        except Exception:
            errors.append({"benchmark": name, "error": traceback.format_exc()})
            print(f"  {name} crashed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return rows, errors


def write_results(document: dict[str, Any], folder: Path = RESULTS) -> tuple[Path, Path]:
    """Write latest.json and a time-stamped copy; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, default=str) + "\n"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(document["created_ts"]))
    latest, copy = folder / "latest.json", folder / f"{stamp}.json"
    for path in (copy, latest):
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return latest, copy


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; print the table; write the JSON results."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (bench_NAME.py); repeatable or a,b",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    only = [part for item in args.only for part in item.split(",") if part]
    names = discover(only)
    if not names:
        print("no benchmarks found", file=sys.stderr)
        return 0
    started = time.time()
    rows, errors = run_all(names, args.quick)
    document = {
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "created_ts": started,
        "quick": args.quick,
        "machine": machine(),
        "results": rows,
        "errors": errors,
    }
    latest, copy = write_results(document, args.out)
    print()
    print(table(rows) if rows else "(no results)")
    missed = [r["name"] for r in rows if not r["met"]]
    print()
    print(
        f"{len(rows)} results, {len(rows) - len(missed)} goals met, {len(missed)} missed"
        + (f", {len(errors)} benchmark(s) crashed" if errors else "")
    )
    print(f"written: {latest} and {copy.name}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # `python benchmarks` from the repo root
    sys.exit(main())
