"""The Flask app factory: settings, the model, the routes and what every request gets (an id,
a JSON log line, metrics, a Server-Timing header)."""
from __future__ import annotations

import os
import re
from time import perf_counter

from flask import Flask, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service import api, logs, openapi, ops, page
from service.config import Config
from service.metrics import count_rows, observe_request
from service.predictor import Predictor
from service.state import load

# A caller's X-Request-ID is kept when it is a sane token; anything else is replaced.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
FACTS = "service.facts"  # the environ key where the app leaves what only it knows


def create_app(config: Config | None = None, predictor: Predictor | None = None) -> Flask:
    """The service for the model in config.model_dir (default: Config.from_env()).
    `predictor` replaces the model loaded from there (bench/constant.py uses it)."""
    config = config or Config.from_env()
    logs.configure()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["service"] = load(config, predictor)
    for blueprint in (api.bp, ops.bp, openapi.bp, page.bp):
        app.register_blueprint(blueprint)
    app.after_request(_annotate)
    app.register_error_handler(HTTPException, _http_error)
    app.wsgi_app = Observed(app.wsgi_app)
    return app


class Observed:
    """What every request gets, whichever route or error answers it: an id (the caller's
    X-Request-ID when it is a sane token), a Server-Timing header, its count and latency in
    Prometheus by route and status, and one JSON log line. A WSGI wrapper rather than Flask's
    before/after_request hooks: it reads the environ directly instead of a dozen context-local
    lookups (bench/RESULTS.md, "Where the time goes")."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        started = perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        facts = environ[FACTS] = {}

        def start(status: str, headers: list, exc_info=None):
            facts["status"] = int(status[:3])
            facts["elapsed"] = elapsed = perf_counter() - started
            headers.append(("X-Request-ID", request_id))
            headers.append(("Server-Timing", f"app;dur={elapsed * 1000:.3f}"))
            return start_response(status, headers, exc_info)

        body = self.wsgi_app(environ, start)
        method, route = environ["REQUEST_METHOD"], facts.get("route", "(unmatched)")
        elapsed = facts.get("elapsed", perf_counter() - started)
        observe_request(method, route, facts.get("status", 500), elapsed)
        entry = {"method": method, "path": facts.get("path", environ.get("PATH_INFO")),
                 "route": route, "status": facts.get("status", 500),
                 "latency_ms": round(elapsed * 1000, 3), "request_id": request_id,
                 "remote_addr": environ.get("REMOTE_ADDR")}
        if "rows" in facts:
            entry["rows"] = facts["rows"]
            if "features" in facts:
                entry["features"] = facts["features"]
        if "error" in facts:
            entry["error"] = facts["error"]
        logs.log_request(entry)
        return body


def _annotate(response):
    """Leave the middleware what only the app knows: the route, the rows, the error."""
    req, context = request._get_current_object(), g._get_current_object()
    facts = req.environ[FACTS]
    facts["path"] = req.path
    facts["route"] = getattr(context, "route", None) or (
        req.url_rule.rule if req.url_rule else "(unmatched)")
    rows = getattr(context, "rows", None)
    if rows is not None:
        state = current_app.extensions["service"]
        count_rows(state.config.model_name, state.predictor.version, rows)
        facts["rows"] = rows
        if hasattr(context, "features"):
            facts["features"] = context.features
    if response.status_code >= 400 and response.is_json:
        facts["error"] = (response.get_json(silent=True) or {}).get("error")
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
