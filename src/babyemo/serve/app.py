"""The HTTP API and page of ``babyemo serve`` (FastAPI), over the CLI's exact prediction.

Routes (OpenAPI page at ``/docs``):

- ``GET /``: the single page (``babyemo/serve/static/index.html``).
- ``GET /v1/health``: ``{"status": "ok", "model": NAME}``.
- ``GET /v1/models``: the model served: name, arch, class names, input size, face
  detector, temperature.
- ``POST /v1/predict``: multipart field ``files`` (one or many images) -> ``{"model",
  "class_names", "rows"}``; each row has the fields of ``babyemo predict --json``'s rows
  (:class:`~babyemo.rows.PredictionWriter`; ``path`` is the uploaded file's name) plus
  ``image_size`` ``[width, height]`` of the upright image (``null`` on error). One row per
  face with face detection; a file that cannot be read is an error row.
- ``POST /v1/predict.csv``: the same files -> the CSV ``babyemo predict --csv`` writes.

With a token, every ``/v1`` route needs ``Authorization: Bearer TOKEN`` (the page and the
OpenAPI page hold no data and load without it; the page asks for the token). Every error
is a JSON body ``{"error": CODE, "detail": MESSAGE, "hint": HINT}``: 401 (token), 404,
405, 413 (body over ``max_bytes``, an image over ``max_pixels``), 422 (no files, too many
files, not a form); never a traceback.

Uploads stay in memory: nothing is written to disk. Each request's images are decoded and
their faces detected in a thread pool; their model inputs then go through one queue
(:class:`~babyemo.serve.uploads.Batcher`) where concurrent requests share one forward
pass of up to ``max_batch`` images, gathered for up to ``batch_wait_ms``.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of the route
# functions defined inside create_app, whose types are imported there.
import asyncio
import io
import json
import math
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from babyemo.errors import ConfigError, MissingDependencyError
from babyemo.runtime import Runtime
from babyemo.serve.uploads import (
    Batcher,
    Upload,
    UploadError,
    collate,
    image_pixels,
    parse_multipart,
    read_body,
    upright_size,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from babyemo.prediction import FileResult, Predictor

MIB = 1024 * 1024

FILES_FIELD = "files"
"""The multipart form field of the images."""


@dataclass(frozen=True)
class ServeSettings:
    """How ``babyemo serve`` runs.

    Attributes:
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        token: Bearer token every ``/v1`` request must send (``None``: no check; only
            for localhost).
        max_files: Most files per request.
        max_bytes: Largest request body, in bytes (20 MiB).
        max_pixels: Most pixels (width x height) per image (50 MP).
        batch_wait_ms: Longest wait for more requests' images before a forward pass, in
            milliseconds.
        max_batch: Most images per forward pass (about: the last request taken may add
            a few more).
        runtime: How the model runs (``None``: ``babyemo predict``'s defaults).
        faces: Face detection as ``babyemo predict --faces``: ``"auto"``, ``"none"`` or a
            detector name.
        no_face_fallback: ``"whole_image"`` or ``"error"`` (see
            :class:`~babyemo.prediction.Predictor`).
        min_confidence: Rows below it are labelled ``uncertain`` (adds ``top_class``).
        decode_threads: Threads that decode images and detect faces (``None``: one per
            CPU core).

    Raises:
        ConfigError: A limit below 1, or a negative ``batch_wait_ms``.
    """

    checkpoint: str | None = None
    model: str | None = None
    token: str | None = None
    max_files: int = 64
    max_bytes: int = 20 * MIB
    max_pixels: int = 50_000_000
    batch_wait_ms: float = 10.0
    max_batch: int = 32
    runtime: Runtime | None = None
    faces: str = "auto"
    no_face_fallback: str = "whole_image"
    min_confidence: float | None = None
    decode_threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_files", "max_bytes", "max_pixels", "max_batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}.",
                                  "use a positive number")
        if not self.batch_wait_ms >= 0:
            raise ConfigError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms!r}.",
                              "e.g. 10 (0: no wait for other requests)")
        if self.token is not None and not self.token.strip():
            raise ConfigError("The token is empty.", "give a long random string, e.g. "
                              "python -c 'import secrets; print(secrets.token_urlsafe())'")


def require_fastapi() -> None:
    """Fail early when the ``serve`` extra is missing.

    Raises:
        MissingDependencyError: fastapi, uvicorn or python-multipart is not installed.
    """
    import importlib.util

    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"),
                            ("python_multipart", "python-multipart")):
        if importlib.util.find_spec(module) is None and not (
                module == "python_multipart" and importlib.util.find_spec("multipart")):
            raise MissingDependencyError(package, "serve", "babyemo serve")


def page_html() -> str | None:
    """The page (``babyemo/serve/static/index.html``), or ``None`` when it is not installed."""
    from importlib import resources

    try:
        return (resources.files("babyemo.serve") / "static" / "index.html").read_text("utf-8")
    except (FileNotFoundError, NotADirectoryError, OSError):
        return None


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float made ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class Service:
    """The model served and the work of one request: read, decode, batch, rows.

    Args:
        settings: The :class:`ServeSettings`.
        predictor: The model (``None``: loaded from ``settings`` as ``babyemo predict``
            loads it).

    Raises:
        The errors of :class:`~babyemo.prediction.Predictor` (unknown model, bad
        checkpoint, missing face detector...).
    """

    def __init__(self, settings: ServeSettings, predictor: "Predictor | None" = None) -> None:
        from babyemo.prediction import DEFAULT_RUNTIME, Predictor

        self.settings = settings
        self.predictor = predictor or Predictor(
            settings.checkpoint, model=settings.model,
            runtime=settings.runtime or DEFAULT_RUNTIME, faces=settings.faces,
            no_face_fallback=settings.no_face_fallback,
            min_confidence=settings.min_confidence)
        ckpt = self.predictor.checkpoint
        self.name = ckpt.name or (ckpt.path.stem if ckpt.path else ckpt.arch)
        self.batcher = Batcher(self.predictor.predict_tensor, max_batch=settings.max_batch,
                               wait_s=settings.batch_wait_ms / 1000)
        self.decoder = ThreadPoolExecutor(settings.decode_threads or os.cpu_count() or 1,
                                          thread_name_prefix="babyemo-serve-decode")

    def close(self) -> None:
        """Stop the model's worker thread and the decoding threads."""
        self.batcher.close()
        self.decoder.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> dict[str, Any]:
        """The ``/v1/models`` entry of the model."""
        ckpt, faces = self.predictor.checkpoint, self.predictor.face_detection
        return {"name": self.name, "arch": ckpt.arch, "class_names": list(ckpt.class_names),
                "input_size": ckpt.input_spec.size,
                "faces": faces.detector if faces is not None else None,
                "temperature": self.predictor.model.temperature}

    async def uploads(self, request: Any) -> list[Upload]:
        """The files of a ``/v1/predict`` request, read into memory under the limits.

        Raises:
            UploadError: 413 body over ``max_bytes``; 422 not a form, no files, too many.
        """
        s = self.settings
        body = await read_body(request.stream(), request.headers.get("content-length"),
                               s.max_bytes)
        parts = parse_multipart(request.headers.get("content-type"), body,
                                max_parts=s.max_files)
        files = [p for p in parts if p.field == FILES_FIELD]
        if not files:
            raise UploadError(422, "no_files", "The form holds no files in the field "
                              f"'{FILES_FIELD}'.", "POST multipart/form-data with one or more "
                              f"photos in the field '{FILES_FIELD}'")
        for i, f in enumerate(files):
            if not f.filename:
                f.filename = f"upload-{i + 1}"
        return files

    def _read(self, upload: Upload) -> tuple[Any, tuple[int, int] | None]:
        """Decode one upload (in a decoding thread): its item and upright size."""
        size = image_pixels(upload.data)
        if size is not None and size[0] * size[1] > self.settings.max_pixels:
            raise UploadError(413, "too_many_pixels", f"{upload.filename}: {size[0]}x"
                              f"{size[1]} = {size[0] * size[1]:,} pixels, over the "
                              f"{self.settings.max_pixels:,}-pixel limit per image.",
                              "downscale the photo")
        item = self.predictor.read_image(str(upload.filename), upload.data)
        if item.error is not None:
            return item, None
        if self.predictor.face_detection is not None and item.size is not None:
            return item, tuple(item.size)
        return item, upright_size(upload.data, size) if size is not None else item.size

    async def predict(self, uploads: list[Upload]) -> "tuple[list[FileResult], list[Any]]":
        """The results of the uploads (one :class:`~babyemo.prediction.FileResult` each,
        in order) and their upright sizes.

        Raises:
            UploadError: 413 an image over ``max_pixels``.
        """
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(*[loop.run_in_executor(self.decoder, self._read, u)
                                         for u in uploads])
        items = [item for item, _ in decoded]
        images = collate(items)
        probs = (await asyncio.wrap_future(self.batcher.submit(images))
                 if images is not None else None)
        return self.predictor.item_results(items, probs), [size for _, size in decoded]

    def writer(self, **streams: Any) -> Any:
        """A :class:`~babyemo.rows.PredictionWriter` with ``babyemo predict``'s columns."""
        from babyemo.rows import PredictionWriter

        p = self.predictor
        return PredictionWriter(p.class_names, **streams, with_top=p.min_confidence is not None,
                                with_faces=p.face_detection is not None)

    def json_rows(self, results: "list[FileResult]", sizes: list[Any]) -> list[dict[str, Any]]:
        """The ``babyemo predict --json`` rows of ``results``, each with ``image_size``."""
        out: list[dict[str, Any]] = []
        for result, size in zip(results, sizes, strict=True):
            stream = io.StringIO()
            writer = self.writer(json_stream=stream)
            for row in result.rows:
                writer.write(row)
            writer.close()
            for record in json.loads(stream.getvalue()):
                record["image_size"] = list(size) if size is not None else None
                out.append(_finite(record))
        return out

    def csv_text(self, results: "list[FileResult]") -> str:
        """The ``babyemo predict --csv`` text of ``results``."""
        stream = io.StringIO(newline="")
        writer = self.writer(csv_stream=stream)
        for result in results:
            for row in result.rows:
                writer.write(row)
        writer.close()
        return stream.getvalue()


def _error_body(code: str, detail: str, hint: str | None = None) -> dict[str, Any]:
    return {"error": code, "detail": detail, "hint": hint}


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "request_too_large", 422: "bad_request"}

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": what, "content": {"application/json": {"example": _error_body(
        code, what, None)}}}
    for status, code, what in ((401, "unauthorized", "Missing or wrong bearer token."),
                               (413, "request_too_large", "Request or image too large."),
                               (422, "no_files", "No files, too many files, or not a form."))}

_FORM_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FILES_FIELD],
    "properties": {FILES_FIELD: {"type": "array",
                                 "items": {"type": "string", "format": "binary"},
                                 "description": "One or more images (JPEG, PNG, WebP...)."}}}}}}}


def create_app(settings: ServeSettings | None = None, *,
               predictor: "Predictor | None" = None) -> "FastAPI":
    """The FastAPI app of ``babyemo serve`` (see the module docstring for its routes).

    The model is loaded once, here.

    Args:
        settings: How it runs (default :class:`ServeSettings`: the default model).
        predictor: A model already loaded (then ``settings``' model choice is not used).

    Raises:
        MissingDependencyError: fastapi, uvicorn or python-multipart is not installed
            (``pip install 'babyemo[serve]'``).
        The errors of :class:`~babyemo.prediction.Predictor`.
    """
    require_fastapi()
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from babyemo import __version__

    settings = settings or ServeSettings()
    service = Service(settings, predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        service.close()

    app = FastAPI(title="babyemo", version=__version__, lifespan=lifespan,
                  description="Infant facial-expression emotion recognition on this machine: "
                  "the models, preprocessing and face detection of `babyemo predict`. "
                  "Uploads stay in memory.")
    app.state.service = service
    bearer = HTTPBearer(auto_error=False, description="The token given to babyemo serve "
                        "--token (only when it was given).")

    def check_token(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                           Depends(bearer)]) -> None:
        if settings.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), settings.token.encode()):
            raise UploadError(401, "unauthorized", "Missing or wrong bearer token." if given
                              else "This server needs a bearer token.",
                              "send the header 'Authorization: Bearer TOKEN' with the token "
                              "given to babyemo serve --token")

    def error(status: int, code: str, detail: str, hint: str | None = None) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(_error_body(code, detail, hint), status_code=status,
                            headers=headers)

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, e: UploadError) -> JSONResponse:
        return error(e.status, e.code, e.detail, e.hint)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        detail = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        hint = "see /docs for the routes" if e.status_code in (404, 405) else None
        return error(e.status_code, _HTTP_CODES.get(e.status_code, "http_error"), detail, hint)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        return error(422, "bad_request", "; ".join(
            f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}"
            for err in e.errors()) or "invalid request", "see /docs")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        return error(500, "internal_error", f"The server failed: {type(e).__name__}.",
                     "a bug in babyemo: please report it with the file that caused it")

    auth = [Depends(check_token)]

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        html = page_html()
        if html is None:
            return error(404, "not_found", "The page (babyemo/serve/static/index.html) is "
                         "not installed.", "use the API: see /docs")
        return HTMLResponse(html)

    @app.get("/v1/health", dependencies=auth, summary="Is the server up, and which model")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": service.name}

    @app.get("/v1/models", dependencies=auth, summary="The model served",
             responses=_ERROR_RESPONSES)
    async def models() -> dict[str, Any]:
        return {"default": service.name, "models": [_finite(service.describe())]}

    @app.post("/v1/predict", dependencies=auth, openapi_extra=_FORM_BODY,
              responses=_ERROR_RESPONSES,
              summary="Classify photos: JSON rows (those of babyemo predict --json)")
    async def predict(request: Request) -> dict[str, Any]:
        results, sizes = await service.predict(await service.uploads(request))
        return {"model": service.name, "class_names": list(service.predictor.class_names),
                "rows": service.json_rows(results, sizes)}

    @app.post("/v1/predict.csv", dependencies=auth, openapi_extra=_FORM_BODY,
              responses={**_ERROR_RESPONSES, 200: {"content": {"text/csv": {}},
                                                   "description": "The CSV."}},
              response_class=Response,
              summary="Classify photos: the CSV of babyemo predict --csv")
    async def predict_csv(request: Request) -> Response:
        results, _ = await service.predict(await service.uploads(request))
        return Response(service.csv_text(results), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="predictions.csv"'})

    return app
