"""``babyemo serve`` under load: requests/s and p50/p95 latency at 1, 8 and 32 concurrent
clients on localhost (one real baby photo per request), against ``babyemo predict``'s
images/s on the same photos with the same model.

    .venv/bin/python benchmarks/bench_serve.py [--photos 60] [--requests 120]
        [--clients 1,8,32] [--checkpoint PT | --model NAME] [--rounds 1]

The model (default: the packaged default model, with its face detection; the YuNet file
from ``BABYEMO_MODELS``, default ``../shared/models``) is loaded once; the CLI side is
``predict_to_files`` over the photos (CSV to a throw-away stream) with ``babyemo
predict``'s default runtime, warmed up by one run. The server is the app of ``babyemo
serve`` (:func:`babyemo.serve.create_app` with the same predictor) in uvicorn on
127.0.0.1 in this process; each client is a thread with its own ``httpx.Client`` (one
keep-alive connection) that posts one photo per request, cycling through the photos,
until ``--requests`` requests are done at that level. Latency is per request, from send
to the parsed JSON; requests/s is requests over the level's wall time. Clients and server
share the machine's cores, as they would on one workstation. Ratio: requests/s (= photos/s)
over the CLI's images/s. A quick check: ``--photos 8 --requests 16 --clients 1,8``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import DATA, figure, print_machine, ratio, temp_home


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, by linear interpolation."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cli_images_per_s(predictor, photos: list[Path], rounds: int) -> float:
    """Median images/s of ``predict_to_files`` over ``photos`` (after one warm-up run)."""
    from babyemo.prediction import predict_to_files

    speeds = []
    for i in range(rounds + 1):
        summary = predict_to_files(photos, predictor, csv_out=io.StringIO())
        if i:
            speeds.append(summary.images_per_s)
    return statistics.median(speeds)


def load(url: str, photos: list[tuple[str, bytes]], clients: int, requests: int,
         token: str | None) -> tuple[float, list[float], int]:
    """``requests`` one-photo requests from ``clients`` threads: wall seconds, latencies in
    seconds, and the number of non-200 answers."""
    import httpx

    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=300, headers=headers) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                name, data = photos[i % len(photos)]
                t0 = time.perf_counter()
                r = client.post("/v1/predict", files=[("files", (name, data))])
                ok = r.status_code == 200 and bool(r.json()["rows"])
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    failures[0] += not ok

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client_loop) for _ in range(clients)]:
            f.result()
    return time.perf_counter() - start, latencies, failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=60, help="real photos used")
    parser.add_argument("--requests", type=int, default=120, help="requests per level")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=1, help="timed CLI runs (median)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("BABYEMO_MODELS", str(DATA.parent / "models"))
    home = temp_home()
    try:
        from babyemo.prediction import Predictor
        from babyemo.serve import ServeSettings, create_app
        from babyemo.serve.server import running

        print_machine()
        folder = DATA / "baby-photos"
        photos = sorted(p for p in folder.iterdir() if p.is_file()
                        and not p.name.startswith("."))[:args.photos]
        predictor = Predictor(args.checkpoint, model=args.model)
        print(f"model: {predictor.checkpoint.name}, faces: "
              f"{predictor.face_detection.detector if predictor.face_detection else 'none'}, "
              f"{len(photos)} photos from {folder}")
        cli = figure("cli images/s", cli_images_per_s(predictor, photos, args.rounds), "img/s")
        app = create_app(ServeSettings(batch_wait_ms=args.batch_wait_ms,
                                       max_batch=args.max_batch), predictor=predictor)
        payload = [(p.name, p.read_bytes()) for p in photos]
        with running(app) as url:
            load(url, payload, 1, min(4, args.requests), None)  # warm-up
            for clients in (int(c) for c in args.clients.split(",")):
                wall, latencies, failed = load(url, payload, clients, args.requests, None)
                rps = figure(f"serve {clients} clients requests/s", args.requests / wall,
                             "req/s", 2)
                figure(f"serve {clients} clients p50 latency",
                       1000 * percentile(latencies, 50), "ms")
                figure(f"serve {clients} clients p95 latency",
                       1000 * percentile(latencies, 95), "ms")
                batcher = app.state.service.batcher
                print(f"serve {clients} clients: {len(latencies)} answered, {failed} failed")
                ratio(f"serve {clients} clients", "cli", rps, cli)
            print(f"forward passes: {batcher.batches} for {batcher.images} images "
                  f"({batcher.images / max(1, batcher.batches):.1f} per pass)")
    finally:
        home.cleanup()


if __name__ == "__main__":
    main()
