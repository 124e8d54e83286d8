"""The Flask app factory: settings, the model, the routes and what every request gets (an id,
a JSON log line, metrics, a Server-Timing header)."""
from __future__ import annotations

import os
import re
from time import perf_counter

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from service import api, logs, openapi, ops, page
from service.config import Config
from service.metrics import observe_request
from service.predictor import Predictor
from service.state import load

# A caller's X-Request-ID is kept when it is a sane token; anything else is replaced.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
FACTS = "service.facts"  # the environ key where Flask's routes leave what only they know
# As werkzeug's Response spells them.
STATUS_LINES = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}


def create_app(config: Config | None = None, predictor: Predictor | None = None) -> Flask:
    """The service for the model in config.model_dir (default: Config.from_env()).
    `predictor` replaces the model loaded from there (bench/constant.py uses it)."""
    config = config or Config.from_env()
    logs.configure()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    state = app.extensions["service"] = load(config, predictor)
    for blueprint in (ops.bp, openapi.bp, page.bp):
        app.register_blueprint(blueprint)
    app.after_request(_annotate)
    app.register_error_handler(HTTPException, _http_error)
    app.wsgi_app = Observed(app.wsgi_app, api.TFServing(state))
    return app


class Observed:
    """What every request gets, whichever route or error answers it: an id (the caller's
    X-Request-ID when it is a sane token), a Server-Timing header, its count and latency in
    Prometheus by route and status, and one JSON log line. A WSGI wrapper rather than Flask's
    before/after_request hooks: it reads the environ directly instead of a dozen context-local
    lookups (bench/RESULTS.md, "Where the time goes"). TF Serving's /v1/ is answered here
    too, without Flask (service.api.TFServing says why); every other route goes to Flask."""

    def __init__(self, wsgi_app, tfserving: api.TFServing):
        self.wsgi_app = wsgi_app
        self.tfserving = tfserving

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

        method = environ["REQUEST_METHOD"]
        # The path as Flask's request.path gives it (WSGI's latin-1 read as UTF-8).
        path = facts["path"] = "/" + environ.get("PATH_INFO", "").encode("latin-1").decode(
            "utf-8", "replace").lstrip("/")
        if api.V1.match(path):
            status, payload = self.tfserving(environ, method, path, facts)
            start(STATUS_LINES[status], [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(payload)))])
            body = [] if method == "HEAD" else [payload]
        else:
            body = self.wsgi_app(environ, start)
        route = facts.get("route", "(unmatched)")
        elapsed = facts.get("elapsed", perf_counter() - started)
        observe_request(method, route, facts.get("status", 500), elapsed)
        entry = {"method": method, "path": path,
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
    """Leave the middleware what only Flask knows: the route, the error."""
    req = request._get_current_object()
    facts = req.environ[FACTS]
    facts["route"] = req.url_rule.rule if req.url_rule else "(unmatched)"
    if response.status_code >= 400 and response.is_json:
        facts["error"] = (response.get_json(silent=True) or {}).get("error")
    return response


def _http_error(error: HTTPException):
    """Errors outside /v1 in the same JSON shape as inside it."""
    if isinstance(error, RequestEntityTooLarge):
        message = api.too_large(current_app.config["MAX_CONTENT_LENGTH"])
    elif error.code == 404:
        message = f"Not found: {request.path}"
    elif error.code == 405:
        message = f"Method {request.method} not allowed on {request.path}"
    else:
        message = error.description or error.name
    return api.json_response({"error": message}, error.code or 500)
