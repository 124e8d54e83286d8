"""`/`: a page to try the model, built from its schema and prefilled with an example row:
categories as choices, nullable fields that may be left empty, and the answer shown for the
task (the positive label's probability and class, each label's probability, or the value)."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("page", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


@bp.get("/")
def index():
    state = current_app.extensions["service"]
    predictor = state.predictor
    if predictor is None:
        return render_template("index.html", state=state, predictor=None), 503
    return render_template(
        "index.html", state=state, predictor=predictor, example=predictor.example(),
        threshold=predictor.manifest.threshold,
        model_url=f"/v1/models/{state.config.model_name}:predict")
