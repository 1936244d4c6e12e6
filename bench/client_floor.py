#!/usr/bin/env python3
"""How fast can a job's 100 GETs be at all, on this machine? The floor under fleet.py's
sequential figure: the same client (httpx, 6 threads, one keep-alive pool, as fleet.py's
runners) reading the same 100 answers, once from a runner node's local hits and once from a
server that does nothing but write pre-rendered bytes (asyncio, its own process).

    .venv/bin/python bench/client_floor.py [--passes 15] [--paths 100]

If the node's hits cost about what the static server's do, a job's API time through the node
is the client's own CPU: what is left of "10x faster than no cache" is then this machine (2
cores, Python threads sharing one GIL), not the node. Writes bench/results/client_floor.json
(medians over the passes, client CPU per pass, the node's CPU per hit, the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from conftest import FLEET_TOKEN, NodeProcess, free_port  # noqa: E402
from fakegithub import FakeGitHub  # noqa: E402
import figures  # noqa: E402
from fleet import ACCEPT, endpoints  # noqa: E402


def static_server(port: int, answers: dict[str, bytes], ready: "multiprocessing.Event") -> None:
    """Answers each request-target with its bytes (status line, headers, body): no parsing
    beyond the target, no work per request."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(answers[head.split(b" ", 2)[1].decode()])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, KeyError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


def job(base: str, paths: list[str], passes: int) -> tuple[list[float], list[float],
                                                             list[httpx.Response]]:
    """fleet.py's runner: 6 GETs in flight from one pool; wall and CPU seconds per pass."""
    limits = httpx.Limits(max_connections=6, max_keepalive_connections=6)
    walls, cpus, answers = [], [], []
    with httpx.Client(base_url=base, headers={"accept": ACCEPT}, timeout=60,
                      limits=limits) as client:
        def get(path: str) -> httpx.Response:
            response = client.get(path)
            response.read()
            return response

        for n in range(passes + 1):
            began, cpu = time.monotonic(), time.process_time()
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(get, paths))
            if n:  # the first pass opens the connections (and, on the node, fills it)
                walls.append(time.monotonic() - began)
                cpus.append(time.process_time() - cpu)
    return walls, cpus, answers


def rendered(response: httpx.Response) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in response.headers.items()
                   if k.lower() != "transfer-encoding")
    return f"HTTP/1.1 {response.status_code} OK\r\n{head}\r\n".encode() + response.content


def main() -> int:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--paths", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    paths = endpoints(args.paths)
    load_before = os.getloadavg()[0]
    fake = FakeGitHub("127.0.0.1", 0, tokens=[FLEET_TOKEN], rate_limit=1_000_000).start()
    with tempfile.TemporaryDirectory(prefix="p2pcache-bench-floor-") as tmp:
        node = NodeProcess("floor", Path(tmp) / "node", fake.url).start()
        try:
            job(node.url, paths, 1)  # fill it: every later pass is 100 local hits
            assert node.proc is not None
            proc = psutil.Process(node.proc.pid)
            cpu_before = sum(proc.cpu_times()[:2])
            node_walls, node_cpus, answers = job(node.url, paths, args.passes)
            node_cpu_s = sum(proc.cpu_times()[:2]) - cpu_before
            sources = {a.headers.get("x-p2p-cache") for a in answers}
            if sources != {"hit"}:
                raise SystemExit(f"the node's answers were not all local hits: {sources}")
        finally:
            node.stop()
            fake.stop()
    port, ready = free_port(), multiprocessing.Event()
    server = multiprocessing.Process(target=static_server, daemon=True,
                                     args=(port, {p: rendered(a) for p, a in
                                                  zip(paths, answers)}, ready))
    server.start()
    try:
        ready.wait(30)
        static_walls, static_cpus, copies = job(f"http://127.0.0.1:{port}", paths, args.passes)
        assert [c.content for c in copies] == [a.content for a in answers]
    finally:
        server.kill()
    gets = args.passes * len(paths)
    result = {
        "paths": len(paths), "passes": args.passes,
        "bytes_per_pass": sum(len(a.content) for a in answers),
        "node_hits_wall_s": round(statistics.median(node_walls), 3),
        "static_server_wall_s": round(statistics.median(static_walls), 3),
        "client_cpu_s_node": round(statistics.median(node_cpus), 3),
        "client_cpu_s_static": round(statistics.median(static_cpus), 3),
        "node_cpu_ms_per_hit": round(node_cpu_s / gets * 1000, 3),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    figures.write(args.out, "client_floor.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
