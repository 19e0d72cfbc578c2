"""A/B of two versions of the extraction plan, statement by statement, on the benchmark's data.

Wall times move by 10-20% between runs on a shared 2-core machine, more than most single
changes gain; comparing two versions means running them alternately in one session. `dump`
writes the PostgreSQL statements a checkout renders for the benchmark experiment (run it with
each checkout's interpreter); `run` executes two dumps alternately (A B, B A, ...), each in its
own transaction like `abflow run`'s extraction, and prints each statement's median:

    .venv/bin/python -m benchmarks.plan_ab dump /tmp/new.pkl
    /path/to/other/checkout/.venv/bin/python -m benchmarks.plan_ab dump /tmp/old.pkl
    .venv/bin/python -m benchmarks.plan_ab run /tmp/old.pkl /tmp/new.pkl --events 5000000 --rounds 4

The data must exist (`python -m benchmarks.run --sizes N` generates it).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abflow.warehouse import plan
from abflow.warehouse.engine import embedded_url
from abflow.warehouse.engines import render_plan
from abflow.warehouse.extract import default_sources
from benchmarks import generate
from benchmarks.run import DATA_DIR, parse_settings, pgoptions

Dump = list[tuple[str, str, dict[str, Any], str]]  # (name, sql, params, kind)


def dump(path: Path) -> None:
    """The rendered extraction plan (stages, statistics, exposure summary) of this checkout."""
    statements = render_plan(
        plan.analysis_plan(generate.experiment(), generate.AS_OF),
        "postgres",
        default_sources("assignments", "events"),
    )
    rows: Dump = [(s.name, s.sql, s.params, s.kind) for s in statements]
    path.write_bytes(pickle.dumps(rows))
    print(f"{path}: {', '.join(name for name, *_ in rows)}")


def run(a: Path, b: Path, events: int, rounds: int, settings: dict[str, str]) -> None:
    """Both dumps alternately, `rounds` times each; medians per statement and in total."""
    import psycopg

    url = embedded_url(DATA_DIR / "pgdata").replace("postgresql+psycopg://", "postgresql://")
    schema = generate.schema_for(events)
    options = f"-csearch_path={schema} {pgoptions(settings)}".strip()
    dumps: dict[Path, Dump] = {p: pickle.loads(p.read_bytes()) for p in (a, b)}
    times: dict[Path, dict[str, list[float]]] = {a: {}, b: {}}
    with psycopg.connect(url, options=options) as conn:
        for i in range(rounds):
            for p in (a, b) if i % 2 == 0 else (b, a):
                with conn.transaction(), conn.cursor() as cur:
                    for name, sql, params, kind in dumps[p]:
                        started = time.perf_counter()
                        cur.execute(sql.encode(), params, prepare=False)
                        if kind == "query":
                            cur.fetchall()
                        times[p].setdefault(name, []).append(time.perf_counter() - started)
                print(f"round {i + 1} {p.name}: {sum(v[-1] for v in times[p].values()):.2f} s")
    for p in (a, b):
        medians = {name: statistics.median(v) for name, v in times[p].items()}
        shown = ", ".join(f"{n} {t:.2f}" for n, t in medians.items() if t >= 0.02)
        print(f"{p.name}: total {sum(medians.values()):.2f} s ({shown})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="write this checkout's rendered plan")
    d.add_argument("path", type=Path)
    r = sub.add_parser("run", help="run two dumps alternately")
    r.add_argument("a", type=Path)
    r.add_argument("b", type=Path)
    r.add_argument("--events", type=int, default=1_000_000)
    r.add_argument("--rounds", type=int, default=4)
    r.add_argument("--set", action="append", default=["enable_indexscan=off"], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    if args.command == "dump":
        dump(args.path)
    else:
        run(args.a, args.b, args.events, args.rounds, parse_settings(args.set))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
