"""TensorFlow Serving's REST API (/v1/...), so a client written for tensorflow_model_server
works unchanged. Like TF Serving, one handler takes every path under /v1/ and matches it with
TF Serving's own regular expressions (case-insensitive, labels included); anything else there,
or another method, is a 400 "Malformed request". The answer is the model's output as TF
Serving gives it, one row per example: binary [[p_positive], ...], multiclass
[[p_label1, ..., p_labelK], ...] in the schema's label order, regression [[value], ...].
Differences, on purpose: NaN/Infinity and values outside the schema's range are refused; plain
lists of values are accepted next to objects keyed by feature name; there is no
classify/regress signature.
"""
from __future__ import annotations

import re

import orjson

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from service.validation import (DEFAULT_SIGNATURE, InvalidRequest, parse_json,
                                signature_name)

bp = Blueprint("tfserving", __name__)

V1 = re.compile(r"/v1/", re.IGNORECASE)
PREDICT = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                     r":(classify|regress|predict)", re.IGNORECASE)
STATUS = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                    r"(?:/(metadata))?", re.IGNORECASE)
PREDICT_METHOD = "tensorflow/serving/predict"
# The signature's output, by task (its shape is [-1, len(Schema.outputs)]).
OUTPUT_NAME = {"binary": "probability", "multiclass": "probabilities", "regression": "value"}
# A category's values are strings; numbers go in as TF Serving's float or int64 tensors.
INPUT_DTYPE = {"float": "DT_FLOAT", "int": "DT_INT64", "category": "DT_STRING"}
INT64_MAX = 2**63 - 1


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def json_response(body, status: int = 200) -> Response:
    # numpy arrays go out as they are; a float32 as its shortest decimal (0.8125, not
    # 0.8125000004656613).
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status=status,
                    mimetype="application/json")


@bp.before_app_request
def tfserving():
    """Answer every /v1/ request here, before Flask's routing could answer 404 or 405."""
    if not V1.match(request.path):
        return None
    try:
        return _dispatch(request.method, request.path)
    except InvalidRequest as error:
        return json_response({"error": str(error)}, 400)
    except ApiError as error:
        return json_response({"error": str(error)}, error.status)


def _dispatch(method: str, path: str) -> Response:
    if method == "POST" and (match := PREDICT.fullmatch(path)):
        name, version, label, verb = match.groups()
        g.route = f"/v1/models/{{name}}:{verb.lower()}"
        if verb.lower() == "predict":
            return _predict(name, version, label)
        _resolve(name, version, label, predict=True)
        return json_response({"error": f"Expected {verb.lower()} signature method_name to be "
                                       f"tensorflow/serving/{verb.lower()}. Was: "
                                       f"{PREDICT_METHOD}"}, 400)
    if method == "GET" and (match := STATUS.fullmatch(path)):
        name, version, label, metadata = match.groups()
        g.route = "/v1/models/{name}/metadata" if metadata else "/v1/models/{name}"
        if not name:
            raise ApiError(400, "Missing model name in request.")
        predictor = _resolve(name, version, label, predict=False)
        if metadata:
            return json_response(metadata_body(name, predictor))
        return json_response(status_body(predictor.version))
    g.route = "/v1 (malformed)"
    raise ApiError(400, f"Malformed request: {method} {path}")


def _resolve(name: str, version: str | None, label: str | None, predict: bool):
    """The loaded model, if the URL names it (TF Serving's 404 and 400 messages)."""
    state = current_app.extensions["service"]
    if version is not None and int(version) > INT64_MAX:
        raise ApiError(400, f"Failed to convert version: {version} to numeric.")
    if name != state.config.model_name:
        raise ApiError(404, f"Servable not found for request: Latest({name})" if predict
                       else f"Could not find any versions of model {name}")
    if state.predictor is None:
        raise ApiError(503, f"Model {name} is not available: {state.error}")
    if label is not None:
        raise ApiError(400, f"Unrecognized servable version label: {label}")
    if version is not None and int(version) != int(state.predictor.version):
        raise ApiError(404, f"Servable not found for request: Specific({name}, {version})"
                       if predict else f"Could not find version {version} of model {name}")
    return state.predictor


def _predict(name: str, version: str | None, label: str | None) -> Response:
    # TF Serving's order: the body, its signature_name, the model, the signature, the tensors.
    document = parse_json(_body())
    signature = signature_name(document)
    predictor = _resolve(name, version, label, predict=True)
    if signature != DEFAULT_SIGNATURE:
        raise ApiError(400, f'Serving signature name: "{signature}" not found in signature def')
    state = current_app.extensions["service"]
    batch = state.parser.parse(document)
    g.rows = len(batch.rows)
    if state.config.log_features:
        g.features = batch.rows.tolist()
    outputs = predictor.predict(batch.rows)
    state.predictions.observe(outputs)
    return json_response({"outputs" if batch.columnar else "predictions": outputs})


def _body() -> bytes:
    """The request body, refused (413) over MAX_BODY_BYTES before a byte of it is read. With a
    Content-Length, one read from the server's stream: werkzeug's 64 KiB steps cost 0.5 ms more
    on a 1024-row body (bench/RESULTS.md). A chunked body goes through werkzeug."""
    length = request.content_length
    if length is None:
        return request.get_data(cache=False)
    if length > current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    return request.environ["wsgi.input"].read(length)


def status_body(version: str) -> dict:
    return {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def _tensor(name: str, dtype: str, *sizes: int) -> dict:
    return {"dtype": dtype, "name": name, "tensor_shape": {
        "dim": [{"size": str(size), "name": ""} for size in sizes], "unknown_rank": False}}


def metadata_body(name: str, predictor) -> dict:
    """The signature as TF Serving shows it (signature_def nested twice, sizes as strings):
    one named input per feature, shape [-1], and one output [-1, K] named after what it is
    (the positive label's probability; the labels' probabilities; the value)."""
    schema = predictor.schema
    inputs = {feature.name: _tensor(f"{feature.name}:0", INPUT_DTYPE[feature.dtype], -1)
              for feature in schema.features}
    outputs = {OUTPUT_NAME[schema.task]: _tensor(predictor.output_tensor_name, "DT_FLOAT", -1,
                                                 len(schema.outputs))}
    return {"model_spec": {"name": name, "signature_name": "", "version": predictor.version},
            "metadata": {"signature_def": {"signature_def": {DEFAULT_SIGNATURE: {
                "inputs": inputs, "outputs": outputs, "method_name": PREDICT_METHOD}}}}}
