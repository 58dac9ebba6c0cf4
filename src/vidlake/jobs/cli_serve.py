"""`vidlake serve`: the HTTP API and results page over an index, on Ray Serve."""

from __future__ import annotations

import signal
import time
from typing import Annotated

import typer

from vidlake.errors import UsageError
from vidlake.jobs.cli import IndexOpt, StorageOpt, app, open_store, out, parse_storage_options


def _default_verify_model(index_uri: str, storage_options: dict | None) -> str | None:
    """The model the index's videos were indexed with (the most common), if any."""
    from collections import Counter

    from vidlake.store.schema import STATUS_INDEXED
    from vidlake.store.tables import IndexStore

    videos = IndexStore.open(index_uri, storage_options).dataset("videos")
    models = videos.to_table(columns=["model_id"], filter=f"status = '{STATUS_INDEXED}'")
    counts = Counter(m for m in models.column("model_id").to_pylist() if m)
    return counts.most_common(1)[0][0] if counts else None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def serve(
    index_uri: IndexOpt,
    host: Annotated[
        str, typer.Option(help="Address to bind; another than 127.0.0.1 exposes the index.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="VIDLAKE_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on every request (env VIDLAKE_TOKEN).",
        ),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: an embedded local Ray).")
    ] = None,
    replicas: Annotated[int, typer.Option(help="API replicas.")] = 1,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Offer POST /verify (writes hits).")
    ] = True,
    model: Annotated[
        str | None,
        typer.Option(help="Model for /verify (default: the one the index was built with)."),
    ] = None,
    device: Annotated[str, typer.Option(help="Device of the /verify model.")] = "auto",
    verify_min_replicas: Annotated[
        int, typer.Option(help="Model replicas kept loaded (0: loaded on the first /verify).")
    ] = 0,
    verify_max_replicas: Annotated[
        int | None, typer.Option(help="At most this many model replicas (default: one per GPU).")
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every HTTP request (Ray Serve's INFO line).")
    ] = False,
    storage_option: StorageOpt = None,
) -> None:
    """Serve an index over HTTP (JSON API and a results page) until Ctrl-C or SIGTERM."""
    from vidlake.pipeline.index_job import init_ray
    from vidlake.serve.deployments import ServeConfig, check_listen, start, stop

    if not 0 < port < 65536:
        raise UsageError(f"--port must be 1..65535, got {port}")
    if replicas < 1:
        raise UsageError(f"--replicas must be >= 1, got {replicas}")
    if verify_min_replicas < 0:
        raise UsageError(f"--verify-min-replicas must be >= 0, got {verify_min_replicas}")
    if token is not None and not token.strip():
        raise UsageError("--token (or VIDLAKE_TOKEN) is empty")
    options = parse_storage_options(storage_option) or None
    open_store(index_uri, storage_option)  # a bad index is a usage error before Ray starts
    verify_model = None
    if verify:
        verify_model = model or _default_verify_model(index_uri, options)
        if verify_model:
            from vidlake.model import check_model

            check_model(verify_model)
    config = ServeConfig(
        index_uri=index_uri,
        host=host,
        port=port,
        token=token,
        storage_options=options,
        replicas=replicas,
        verify_model=verify_model,
        verify_device=device,
        verify_min_replicas=verify_min_replicas,
        verify_max_replicas=verify_max_replicas,
        access_log=access_log,
    )
    if address is None:
        check_listen(host, port)  # the embedded Ray's proxy binds here, on this machine
    init_ray(address)
    # After Ray's init, which installs a handler that dumps a stack on SIGTERM: a service
    # manager's stop is a normal shutdown, the same as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        url = start(config, embedded=address is None)
        out.print(f"serving {index_uri} at {url} (Ctrl-C stops)", markup=False, soft_wrap=True)
        if host not in ("127.0.0.1", "localhost", "::1") and not token:
            out.print("warning: listening beyond this machine without --token", markup=False)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        out.print("stopping")
    finally:
        stop(embedded=address is None)
