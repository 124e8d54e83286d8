"""Routes for operators: liveness, readiness and Prometheus metrics."""
from __future__ import annotations

from flask import Blueprint, Response, current_app

from service.api import json_response
from service.metrics import exposition
from service.state import shutting_down

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    """Alive: the process answers, whatever the model's state (restart only if this fails)."""
    return json_response({"status": "alive"})


@bp.get("/readyz")
def readyz():
    """Ready: the model loaded and answered a warm-up prediction, and no shutdown has begun.
    "failed" says it never will (the model is loaded once, at start): a deploy stops waiting."""
    state = current_app.extensions["service"]
    if state.predictor is None:
        return json_response({"status": "failed", "reason": state.error}, 503)
    if shutting_down():
        return json_response({"status": "unready", "reason": "shutting down"}, 503)
    return json_response({"status": "ready", "model_name": state.config.model_name,
                          "model_version": state.predictor.version})


@bp.get("/metrics")
@bp.get("/monitoring/prometheus/metrics")  # where TF Serving serves them
def metrics():
    body, content_type = exposition()
    return Response(body, content_type=content_type)
