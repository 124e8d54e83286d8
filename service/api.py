"""TensorFlow Serving's REST API (/v1/...), so a client written for tensorflow_model_server
works unchanged. Like TF Serving, one handler takes every path under /v1/ and matches it with
TF Serving's own regular expressions (case-insensitive, labels included); anything else there,
or another method, is a 400 "Malformed request". The answer is the model's output as TF
Serving gives it, one row per example: binary [[p_positive], ...], multiclass
[[p_label1, ..., p_labelK], ...] in the schema's label order, regression [[value], ...].
Differences, on purpose: NaN/Infinity and values outside the schema's range are refused; plain
lists of values are accepted next to objects keyed by feature name; there is no
classify/regress signature.

/v1/ is answered at the WSGI layer (service.app.Observed hands it here), not through Flask's
request cycle: it has its own dispatch (TF Serving's expressions), reads its body once and
answers bytes, so Flask's request and application contexts, URL adapter, hooks and Response
object were all cost, about a third of a prediction's CPU time (bench/RESULTS.md). Every other
route is Flask's.
"""
from __future__ import annotations

import logging
import re

import orjson
from flask import Response
from werkzeug.exceptions import InternalServerError, RequestEntityTooLarge
from werkzeug.wsgi import get_content_length, get_input_stream

from service.metrics import count_rows
from service.state import ServiceState
from service.validation import (DEFAULT_SIGNATURE, InvalidRequest, parse_json,
                                signature_name)

log = logging.getLogger("service")

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


def json_bytes(body) -> bytes:
    # numpy arrays go out as they are; a float32 as its shortest decimal (0.8125, not
    # 0.8125000004656613).
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(body, status: int = 200) -> Response:
    """For Flask's routes."""
    return Response(json_bytes(body), status=status, mimetype="application/json")


def too_large(limit: int) -> str:
    return f"Request body larger than {limit} bytes (MAX_BODY_BYTES)"


class TFServing:
    """Answers every request under /v1/ from the WSGI environ: its status and JSON body. Leaves
    in `facts` what the request's log line and metrics need: the route, the rows (and their
    values with LOG_FEATURES), the error."""

    def __init__(self, state: ServiceState):
        self.state = state

    def __call__(self, environ: dict, method: str, path: str, facts: dict) -> tuple[int, bytes]:
        try:
            status, body = 200, self._dispatch(environ, method, path, facts)
        except InvalidRequest as error:
            status, body = 400, {"error": str(error)}
        except ApiError as error:
            status, body = error.status, {"error": str(error)}
        except Exception:  # noqa: BLE001 - as Flask would: logged, and a 500 in our shape
            log.exception("Exception on %s [%s]", path, method)
            status, body = 500, {"error": InternalServerError.description}
        if status >= 400:
            facts["error"] = body["error"]
        return status, json_bytes(body)

    def _dispatch(self, environ: dict, method: str, path: str, facts: dict):
        if method == "POST" and (match := PREDICT.fullmatch(path)):
            name, version, label, verb = match.groups()
            facts["route"] = f"/v1/models/{{name}}:{verb.lower()}"
            if verb.lower() == "predict":
                return self._predict(environ, name, version, label, facts)
            self._resolve(name, version, label, predict=True)
            raise ApiError(400, f"Expected {verb.lower()} signature method_name to be "
                                f"tensorflow/serving/{verb.lower()}. Was: {PREDICT_METHOD}")
        if method == "GET" and (match := STATUS.fullmatch(path)):
            name, version, label, metadata = match.groups()
            facts["route"] = "/v1/models/{name}/metadata" if metadata else "/v1/models/{name}"
            if not name:
                raise ApiError(400, "Missing model name in request.")
            predictor = self._resolve(name, version, label, predict=False)
            if metadata:
                return metadata_body(name, predictor)
            return status_body(predictor.version)
        facts["route"] = "/v1 (malformed)"
        raise ApiError(400, f"Malformed request: {method} {path}")

    def _resolve(self, name: str, version: str | None, label: str | None, predict: bool):
        """The loaded model, if the URL names it (TF Serving's 404 and 400 messages)."""
        state = self.state
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

    def _predict(self, environ: dict, name: str, version: str | None, label: str | None,
                 facts: dict) -> dict:
        # TF Serving's order: the body, its signature_name, the model, the signature, the
        # tensors.
        document = parse_json(self._body(environ))
        signature = signature_name(document)
        predictor = self._resolve(name, version, label, predict=True)
        if signature != DEFAULT_SIGNATURE:
            raise ApiError(400, f'Serving signature name: "{signature}" not found in '
                                f'signature def')
        state = self.state
        batch = state.parser.parse(document)
        facts["rows"] = rows = len(batch.rows)
        count_rows(state.config.model_name, predictor.version, rows)
        if state.config.log_features:
            facts["features"] = batch.rows.tolist()
        outputs = predictor.predict(batch.rows)
        state.predictions.observe(outputs)
        return {"outputs" if batch.columnar else "predictions": outputs}

    def _body(self, environ: dict) -> bytes:
        """The request body, refused (413) over MAX_BODY_BYTES before a byte of it is read.
        With a Content-Length, one read from the server's stream: werkzeug's 64 KiB steps
        cost 0.5 ms more on a 1024-row body (bench/RESULTS.md). A chunked body goes through
        werkzeug's limited stream."""
        limit = self.state.config.max_body_bytes
        length = get_content_length(environ)
        try:
            if length is None:
                return get_input_stream(environ, max_content_length=limit).read()
        except RequestEntityTooLarge:
            raise ApiError(413, too_large(limit)) from None
        if length > limit:
            raise ApiError(413, too_large(limit))
        return environ["wsgi.input"].read(length)


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
