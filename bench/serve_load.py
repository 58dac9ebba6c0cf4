"""HTTP load on `vidlake serve`: N concurrent clients for T seconds against the running app.

Starts the Ray Serve app (serve/deployments.py, verification off) on 127.0.0.1 over an index,
by default the synthetic 1-million-clip index of bench/query_scale.py (generated on first
use), then drives it with closed-loop clients (each sends its next request when the last one
answered) over keep-alive connections, one scenario after the other:

- search: GET /search?q=<concept>&limit=50, a concept drawn uniformly from GET /concepts
- healthz: GET /healthz, the floor that Serve's proxy and the API replica cost per request

and prints requests per second, p50/p99 latency and the non-2xx and 5xx counts.

    .venv/bin/python bench/serve_load.py                        # 32 clients, 30 s, 1M clips
    .venv/bin/python bench/serve_load.py --clients 8 --duration 10
    .venv/bin/python bench/serve_load.py --small                # 20k clips, 5 s: seconds
    .venv/bin/python bench/serve_load.py --url http://127.0.0.1:8000/ --token T   # a running app
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ scripts import each other

SCENARIOS = ("search", "healthz")


def ensure_index(out: Path, clips: int, masklets: int, concepts: int) -> str:
    """The index under OUT, generated with bench/query_scale.py's generator if not there yet."""
    from query_scale import generate

    from vidlake.query.indexes import refresh_indexes
    from vidlake.store.tables import IndexStore

    uri = str(out / "index")
    marker = out / "generated.json"
    wanted = {"clips": clips, "masklets": masklets, "concepts": concepts}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return uri
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"generating {clips:,} clips, {masklets:,} masklets, {concepts:,} concepts", flush=True)
    generate(uri, clips, masklets, concepts)
    refresh_indexes(IndexStore.open(uri))
    marker.write_text(json.dumps(wanted))
    return uri


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


async def drive(url: str, paths: list[str], clients: int, duration_s: float, headers: dict) -> dict:
    """CLIENTS closed-loop clients sending random PATHS for DURATION_S; latencies and statuses."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    deadline = time.perf_counter() + duration_s
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(seed: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            path = rng.choice(paths)
            t0 = time.perf_counter()
            try:
                async with session.get(url.rstrip("/") + path, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "non_2xx": sum(n for s, n in statuses.items() if not 200 <= s < 300),
        "5xx": sum(n for s, n in statuses.items() if s >= 500),
        "connection_errors": errors,
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/vidlake-bench-serve", help="Index folder.")
    parser.add_argument("--index", help="Serve this index instead of the generated one.")
    parser.add_argument("--url", help="Drive an app already running here (no server started).")
    parser.add_argument("--token", default=os.environ.get("VIDLAKE_TOKEN"))
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--masklets", type=int, default=10_000_000)
    parser.add_argument("--concepts", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds per scenario.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds before each.")
    parser.add_argument("--limit", type=int, default=50, help="limit= of each search.")
    parser.add_argument("--replicas", type=int, default=1, help="API replicas.")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--no-access-log", action="store_true", help="Serve's per-request log lines off."
    )
    parser.add_argument(
        "--small", action="store_true", help="20k clips, 200k masklets, 500 concepts, 5 s."
    )
    parser.add_argument("--json", dest="json_out", help="Also write the results here.")
    if "--small" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(clips=20_000, masklets=200_000, concepts=500, duration=5.0, warmup=1)
    args = parser.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown or args.clients < 1 or args.duration <= 0:
        parser.error(f"--scenarios from {SCENARIOS}; --clients >= 1; --duration > 0")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    started_here = False
    url = args.url
    if url is None:
        import ray

        from vidlake.serve.deployments import ServeConfig, start

        out = Path(args.out) / f"{args.clips}"
        uri = args.index or ensure_index(out, args.clips, args.masklets, args.concepts)
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
        )
        t0 = time.perf_counter()
        url = start(
            ServeConfig(
                index_uri=uri,
                port=_free_port(),
                token=args.token,
                replicas=args.replicas,
                api_cpus=0.5,
                verify_model=None,
                access_log=not args.no_access_log,
            )
        )
        print(f"serving {uri} at {url} (started in {time.perf_counter() - t0:.1f} s)", flush=True)
        started_here = True

    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + "/concepts", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        concepts = [c["concept"] for c in json.loads(response.read())["concepts"]]
    from urllib.parse import urlencode

    paths = {
        "search": [f"/search?{urlencode({'q': c, 'limit': args.limit})}" for c in concepts],
        "healthz": ["/healthz"],
    }
    results = {}
    try:
        for name in scenarios:
            if args.warmup > 0:
                asyncio.run(drive(url, paths[name], args.clients, args.warmup, headers))
            results[name] = asyncio.run(
                drive(url, paths[name], args.clients, args.duration, headers)
            )
            print(f"  {name}: {results[name]}", flush=True)
    finally:
        if started_here:
            import ray

            from vidlake.serve.deployments import stop

            stop()
            ray.shutdown()

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "clients": args.clients,
        "duration_s": args.duration,
        "concepts": len(concepts),
        "results": results,
    }
    print(f"\n{report['command']}\n{report['machine']}; {args.clients} clients, {args.duration} s")
    print(f"{'scenario':<10} {'req/s':>8} {'p50':>8} {'p99':>8} {'non-2xx':>8} {'5xx':>5}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['rps']:>8.1f} {r['p50_ms']:>6.1f}ms {r['p99_ms']:>6.1f}ms "
            f"{r['non_2xx']:>8} {r['5xx']:>5}"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
