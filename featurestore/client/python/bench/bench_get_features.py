"""Benchmark: get_features of ENTITIES x FEATURES into a pandas DataFrame, columnar
(GetFeatureColumns -> FeatureColumns.to_pandas) against row-wise (GetFeatures ->
FeatureValues.to_pandas), interleaved call by call on one client against the real stack
(devstack: DynamoDB Local, valkey-server, the server), cached keys. Prints a Markdown
table: DataFrame rows (entities) per second, medians over runs, and where the time goes.

Run with `make bench-python` (or /usr/bin/python3 bench/bench_get_features.py -h).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import featurestore as fs  # noqa: E402
from stack import Stack  # noqa: E402

# 10 features: the mix of a ranking model's inputs.
TYPES = [fs.ValueType.DOUBLE] * 6 + [fs.ValueType.INT64] * 2 + [fs.ValueType.BOOL, fs.ValueType.STRING]


def value(t: fs.ValueType, e: int, f: int) -> object:
    if t == fs.ValueType.DOUBLE:
        return e * 0.5 + f
    if t == fs.ValueType.INT64:
        return e * 1000 + f
    if t == fs.ValueType.BOOL:
        return (e + f) % 2 == 0
    return f"category-{(e * 7 + f) % 13}"


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entities", type=int, default=100)
    ap.add_argument("--features", type=int, default=10, help="at most 10 (the types above, cycled beyond)")
    ap.add_argument("--calls", type=int, default=300, help="calls per mode per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--address", help="use a running server instead of starting the stack")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        stack = None if args.address else Stack(Path(tmp), build=not os.environ.get("FS_PYTEST_NO_BUILD"))
        try:
            run(args, args.address or stack.address)  # type: ignore[union-attr]
        finally:
            if stack is not None:
                stack.close()


def run(args: argparse.Namespace, address: str) -> None:
    types = [TYPES[i % len(TYPES)] for i in range(args.features)]
    with fs.Client(address) as c:
        name = f"bench_{int(time.time())}"
        c.apply_feature_set(fs.FeatureSet(name, "item", [fs.FeatureSpec(f"f{i}", t) for i, t in enumerate(types)]))
        ids = [f"item-{e}" for e in range(args.entities)]
        t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
        rows = [fs.Row(eid, {f"f{i}": value(ty, e, i) for i, ty in enumerate(types)}, t) for e, eid in enumerate(ids)]
        summary = c.batch_write(name, rows, progress=False)
        assert summary.rows_written == args.entities, summary
        refs = [f"{name}:f{i}" for i in range(args.features)]

        def columnar() -> object:
            return c.get_feature_columns(refs, ids).to_pandas()

        def row_wise() -> object:
            return c.get_features(refs, ids).to_pandas()

        a, b = columnar(), row_wise()  # warm the cache and check both agree
        assert a.shape == b.shape == (args.entities, args.features)
        assert all(a[r].tolist() == b[r].tolist() for r in refs), "columnar and row-wise frames differ"
        timed(columnar, 50)
        timed(row_wise, 50)

        col_rates, row_rates, col_p50, row_p50 = [], [], [], []
        for _ in range(args.runs):
            tc: list[float] = []
            tr: list[float] = []
            for _ in range(args.calls):  # interleaved, so load changes hit both modes alike
                tc += timed(columnar, 1)
                tr += timed(row_wise, 1)
            col_rates.append(args.entities * args.calls / sum(tc))
            row_rates.append(args.entities * args.calls / sum(tr))
            col_p50.append(statistics.median(tc))
            row_p50.append(statistics.median(tr))

        # Where the time goes: the call (RPC, protobuf decode, result objects) and the
        # conversion to a DataFrame, measured apart.
        n = args.calls
        col_call = statistics.median(timed(lambda: c.get_feature_columns(refs, ids), n))
        cols = c.get_feature_columns(refs, ids)
        col_conv = statistics.median(timed(cols.to_pandas, n))
        row_call = statistics.median(timed(lambda: c.get_features(refs, ids), n))
        vals = c.get_features(refs, ids)
        row_conv = statistics.median(timed(vals.to_pandas, n))

    med_c, med_r = statistics.median(col_rates), statistics.median(row_rates)
    print(f"get_features {args.entities} entities x {args.features} features into a DataFrame, "
          f"cached keys, {args.runs} runs x {args.calls} calls per mode, interleaved; medians")
    print()
    print("| form | DataFrame rows/s | calls/s | p50 per call | of which the call | of which to_pandas |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| row-wise (GetFeatures) | {med_r:,.0f} | {med_r / args.entities:,.0f} | "
          f"{statistics.median(row_p50) * 1e3:.2f} ms | {row_call * 1e3:.2f} ms | {row_conv * 1e3:.2f} ms |")
    print(f"| columnar (GetFeatureColumns) | {med_c:,.0f} | {med_c / args.entities:,.0f} | "
          f"{statistics.median(col_p50) * 1e3:.2f} ms | {col_call * 1e3:.2f} ms | {col_conv * 1e3:.2f} ms |")
    print()
    print(f"columnar / row-wise: {med_c / med_r:.2f}x (per run: "
          + ", ".join(f"{cr / rr:.2f}" for cr, rr in zip(col_rates, row_rates)) + ")")


if __name__ == "__main__":
    main()
