"""The Flask app factory: settings, the model, the routes and what every request gets (an id,
a JSON log line, metrics, a Server-Timing header)."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service import api, logs, openapi, ops, page
from service.config import Config
from service.metrics import LATENCY, REQUESTS, ROWS
from service.predictor import Predictor
from service.state import load

log = logging.getLogger("service")
# A caller's X-Request-ID is kept when it is a sane token; anything else is replaced.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def create_app(config: Config | None = None, predictor: Predictor | None = None) -> Flask:
    """The service for the model in config.model_dir (default: Config.from_env()).
    `predictor` replaces the model loaded from there (the benchmark's ceiling uses it)."""
    config = config or Config.from_env()
    logs.configure()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["service"] = load(config, predictor)
    app.before_request(_start)  # first: the /v1 handler below answers in a before_request
    for blueprint in (api.bp, ops.bp, openapi.bp, page.bp):
        app.register_blueprint(blueprint)
    app.after_request(_finish)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _start() -> None:
    g.started = time.perf_counter()
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _finish(response):
    elapsed = time.perf_counter() - g.started
    request_id = g.request_id
    route = g.get("route") or (request.url_rule.rule if request.url_rule else "(unmatched)")
    response.headers["X-Request-ID"] = request_id
    response.headers["Server-Timing"] = f"app;dur={elapsed * 1000:.3f}"
    REQUESTS.labels(request.method, route, response.status_code).inc()
    LATENCY.labels(route).observe(elapsed)
    entry = {"method": request.method, "path": request.path, "route": route,
             "status": response.status_code, "latency_ms": round(elapsed * 1000, 3),
             "request_id": request_id, "remote_addr": request.remote_addr}
    rows = g.get("rows")
    if rows is not None:
        state = current_app.extensions["service"]
        ROWS.labels(state.config.model_name, state.predictor.version).inc(rows)
        entry["rows"] = rows
        if "features" in g:
            entry["features"] = g.features
    if response.status_code >= 400 and response.is_json:
        entry["error"] = (response.get_json(silent=True) or {}).get("error")
    log.info("request", extra=entry)
    return response


def _http_error(error: HTTPException):
    """Errors outside /v1 in the same JSON shape as inside it."""
    if isinstance(error, RequestEntityTooLarge):
        message = (f"Request body larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes "
                   f"(MAX_BODY_BYTES)")
    elif error.code == 404:
        message = f"Not found: {request.path}"
    elif error.code == 405:
        message = f"Method {request.method} not allowed on {request.path}"
    else:
        message = error.description or error.name
    return api.json_response({"error": message}, error.code or 500)
