"""`/`: a page to try the model, built from its schema and prefilled with an example row."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("page", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


@bp.get("/")
def index():
    state = current_app.extensions["service"]
    predictor = state.predictor
    status = 200 if predictor is not None else 503
    if predictor is None:
        return render_template("index.html", state=state, predictor=None), status
    schema = predictor.schema
    negative = [label for label in schema.labels if label != schema.positive_label]
    return render_template(
        "index.html", state=state, predictor=predictor, example=predictor.example(),
        positive=schema.positive_label, negative=negative[0] if negative else "not "
        + schema.positive_label, threshold=predictor.manifest.threshold,
        model_url=f"/v1/models/{state.config.model_name}:predict")
