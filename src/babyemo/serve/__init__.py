"""``babyemo serve``: a local web page and an HTTP API over the models of ``babyemo predict``
(FastAPI + uvicorn, the optional extra ``babyemo[serve]``).

Importing this package imports neither torch nor fastapi; :func:`create_app` does.
"""

from babyemo.serve.app import ServeSettings, create_app, require_fastapi

__all__ = ["ServeSettings", "create_app", "require_fastapi"]
