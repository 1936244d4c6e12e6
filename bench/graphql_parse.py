#!/usr/bin/env python3
"""How long reading a GraphQL body takes: gh's real documents, and the worst ones a client
can craft within p2pcache.graphql's limits (the node must not stall on any of them).

For each body: parse_request, then classify, estimated_cost and cache_key (what the node
will do with a query), timed together; the median and the worst of `--repeat` runs, in ms.
Writes bench/results/graphql_parse.json. Run: python bench/graphql_parse.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from p2pcache.graphql import (
    LIMITS,
    GraphQLRequest,
    cache_key,
    classify,
    estimated_cost,
    parse_request,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RECORDED = ROOT / "tests" / "gh_graphql" / "gh_queries.json"


def body(query: str, variables: object = None) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}}).encode()


def crafted() -> dict[str, bytes]:
    """Bodies that push each limit to its edge (and a few just past it)."""
    n = LIMITS.tokens
    levels = LIMITS.definitions - 2
    doubling = ("{ ...F0 } " + " ".join(f"fragment F{i} on T {{ ...F{i + 1} ...F{i + 1} }}"
                                         for i in range(levels))
                + f" fragment F{levels} on T {{ a }}")
    deep = ('{ repository(owner: "o", name: "r") '
            + "{ a(first: 100) " * (LIMITS.depth - 2) + "{ b }" + " }" * (LIMITS.depth - 1))
    aliases = ("{ " + " ".join(f"a{i}: repository(owner: \"o\", name: \"r{i}\") {{ name }}"
                               for i in range(LIMITS.aliases)) + " }")
    return {
        "tokens: flat fields at the limit": body("{ " + "a " * (n - 2) + "}"),
        "tokens: arguments and lists at the limit": body(
            "{ a(x: [" + "1 " * (n - 12) + "]) { b } }"),
        "comments: at the limit": body("# c\n" * n + "{ a }"),
        "query: one string literal at the size limit": body(
            '{ a(s: "' + "x" * (LIMITS.query_chars - 20) + '") }'),
        "depth: at the limit, every level a connection": body(deep),
        "aliases: at the limit, each a repository": body(aliases),
        "fragments: each spreads the next twice (2^30 expanded)": body(doubling),
        "variables: numbers at the values limit": body(
            "{ a }", {"v": list(range(10**6, 10**6 + LIMITS.variables_values - 1))}),
        "variables: keys to sort at the values limit": body(
            "{ a }", {f"k{i}": i for i in range(LIMITS.variables_values)}),
        "variables: one string at the body limit": body(
            "{ a }", {"v": "x" * (LIMITS.body_bytes - 60)}),
        "past the limit: 100k numbers (refused)": body("{ a }", {"v": [0] * 100_000}),
        "past the limit: 100k tokens (refused)": body("{ " + "a " * 100_000 + "}"),
        "past the limit: nested 100k deep (refused)": body("{a" * 100_000 + "}" * 100_000),
        "past the limit: JSON nested 100k deep (refused)": (
            b'{"query": "{a}", "variables": {"v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"),
    }


def measure(raw: bytes, headers: dict, repeat: int) -> dict:
    times, outcome = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        got = parse_request(raw, headers)
        if isinstance(got, GraphQLRequest):
            c = classify(got)
            cost = estimated_cost(got)
            cache_key(got, "api.github.com")
            outcome = {"read": True, "shared": c.shared, "cost": cost}
        else:
            outcome = {"read": False, "passthrough": got.reason}
        times.append((time.perf_counter() - started) * 1000)
    return {"bytes": len(raw), "median_ms": round(statistics.median(times), 3),
            "max_ms": round(max(times), 3), **outcome}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    gh = {}
    for r in json.loads(RECORDED.read_text()):
        name = r["command"]
        while name in gh:
            name += " (next)"
        gh[name] = measure(json.dumps(r["body"]).encode(), r["headers"], args.repeat)
    worst = {name: measure(raw, {}, max(3, args.repeat // 3)) for name, raw in crafted().items()}
    report = {
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2), "repeat": args.repeat,
        "limits": LIMITS.__dict__, "gh": gh, "crafted": worst,
        "gh_max_median_ms": max(v["median_ms"] for v in gh.values()),
        "crafted_max_ms": max(v["max_ms"] for v in worst.values()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "graphql_parse.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    for title, rows in (("gh's documents", gh), ("crafted within (and past) the limits", worst)):
        print(f"{title}:")
        for name, row in rows.items():
            what = (f"cost {row['cost']}, {'shared' if row['shared'] else 'per identity'}"
                    if row["read"] else f"passthrough: {row['passthrough'][:50]}")
            print(f"  {row['median_ms']:8.2f} ms median {row['max_ms']:8.2f} ms max  "
                  f"{row['bytes']:8d} B  {name}  ({what})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
