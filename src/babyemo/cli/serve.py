"""``babyemo serve``: the web page and HTTP API on this machine (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer

from babyemo.cli._common import cli_errors, runtime_options, say, stderr
from babyemo.errors import ConfigError
from babyemo.runtime import PREDICT_BATCH_SIZE, Runtime

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts that only this machine can reach: no token needed."""


def check_host(host: str, token: str | None) -> bool:
    """Whether ``host`` is reachable from other machines (then a token is required).

    Raises:
        ConfigError: A non-local host without ``token``.
    """
    if host in LOCAL_HOSTS:
        return False
    if not token:
        raise ConfigError(f"--host {host} makes the server reachable from other machines, "
                          "so it needs --token.",
                          "give --token with a long random string (python -c 'import "
                          "secrets; print(secrets.token_urlsafe())'), or keep --host "
                          "127.0.0.1")
    return True


@cli_errors
@runtime_options(batch_size=PREDICT_BATCH_SIZE)
def serve_command(
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A .pt checkpoint to serve."),
    model: str = typer.Option(None, "--model", help="A registered model name (default: the "
                              "default model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything "
                             "but 127.0.0.1, localhost or ::1 needs --token."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    token: str = typer.Option(None, "--token", envvar="BABYEMO_SERVE_TOKEN",
                              help="Bearer token every API request must send "
                              "(Authorization: Bearer TOKEN). Also read from "
                              "BABYEMO_SERVE_TOKEN."),
    faces: str = typer.Option("auto", "--faces", help="auto (as the model was trained), none "
                              "(whole images) or a detector name, as babyemo predict."),
    max_files: int = typer.Option(64, "--max-files", min=1, help="Most files per request."),
    max_mb: float = typer.Option(20.0, "--max-mb", min=0.001,
                                 help="Largest request body in MiB."),
    batch_wait_ms: float = typer.Option(10.0, "--batch-wait-ms", min=0.0,
                                        help="Longest wait for other requests' images "
                                        "before a forward pass, in ms."),
    max_batch: int = typer.Option(32, "--max-batch", min=1,
                                  help="Most images per forward pass."),
    runtime: Runtime = None,
) -> None:
    """Serve a web page and an HTTP API that label photos on this machine.

    The page (http://HOST:PORT/) takes photos by drag and drop and shows each face's label;
    the API (POST /v1/predict, /v1/predict.csv; GET /v1/models, /v1/health; OpenAPI page at
    /docs) gives the rows of babyemo predict. Same models, preprocessing and face detection;
    uploads stay in memory. Needs babyemo[serve].
    """
    from babyemo.serve.app import ServeSettings, require_fastapi

    if check_host(host, token):
        stderr.print(f"[yellow]Warning:[/yellow] listening on {host}: other machines can "
                     "reach this server; every API request needs the token.", markup=True)
    require_fastapi()
    settings = ServeSettings(checkpoint=str(checkpoint) if checkpoint else None, model=model,
                             token=token, max_files=max_files,
                             max_bytes=int(max_mb * 1024 * 1024), batch_wait_ms=batch_wait_ms,
                             max_batch=max_batch, runtime=runtime, faces=faces)
    import uvicorn

    from babyemo.serve.app import create_app

    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    say(f"babyemo serve: model {app.state.service.name} at http://{shown}:{port}/ "
        f"(API docs: http://{shown}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
