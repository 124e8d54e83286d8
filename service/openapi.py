"""The OpenAPI 3.1 document, built from the loaded model's schema: the request formats with
each feature's type, range, categories and whether it may be null, the answer of the task
(the positive label's probability, one probability per label, or the value), and every error
the API gives."""
from __future__ import annotations

from flask import Blueprint, current_app

from contract.errors import InputError
from service.api import json_response

bp = Blueprint("openapi", __name__)

ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
         "properties": {"error": {"type": "string"}}}


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _feature_schema(feature) -> dict:
    if feature.is_category:
        schema = {"enum": [*feature.categories, *_numbers_spelling(feature)]}
    else:
        schema = {"type": "integer" if feature.dtype == "int" else "number"}
        if feature.minimum is not None:
            schema["minimum"] = feature.minimum
        if feature.maximum is not None:
            schema["maximum"] = feature.maximum
    if feature.nullable:
        if "enum" in schema:
            schema["enum"].append(None)
        else:
            schema["type"] = [schema["type"], "null"]
    notes = [feature.description] * bool(feature.description) + ["null: a missing value"] \
        * feature.nullable
    if notes:
        schema["description"] = "; ".join(notes)
    return schema


def _numbers_spelling(feature) -> list:
    """The numbers the contract's encoding takes for a category spelled like one (4 for "4")."""
    numbers = []
    for category in feature.categories:
        try:
            value = float(category)
            number = int(value) if value.is_integer() else value
            feature.encode(number)
        except (ValueError, OverflowError, InputError):
            continue
        numbers.append(number)
    return numbers


def _output(schema) -> tuple[str, dict]:
    """What predict answers for the task: a summary, and the schema of its rows."""
    if schema is None:
        return "The model's output for each row", {
            "type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    width = len(schema.outputs)
    value = ({"type": "number"} if schema.task == "regression"
             else {"type": "number", "minimum": 0, "maximum": 1})
    rows = {"type": "array", "items": {"type": "array", "minItems": width, "maxItems": width,
                                       "items": value}}
    if schema.task == "binary":
        summary = f"Probability of '{schema.positive_label}' for each row"
    elif schema.task == "multiclass":
        summary = (f"Probability of each label for each row, in this order: "
                   f"{', '.join(schema.labels)}")
    else:
        summary = f"The predicted '{schema.target}' for each row"
    rows["description"] = summary
    return summary, rows


def document(state) -> dict:
    config, predictor = state.config, state.predictor
    name = config.model_name
    features = predictor.schema.features if predictor else ()
    names = [feature.name for feature in features]
    n_rows = {"minItems": 1, "maxItems": config.max_rows}
    row = {"type": "array", "minItems": len(names), "maxItems": len(names),
           "prefixItems": [_feature_schema(feature) for feature in features],
           "items": False, "description": "One value per feature, in this order: "
                                          + ", ".join(names)}
    named_row = {"type": "object", "required": names, "additionalProperties": False,
                 "properties": {feature.name: _feature_schema(feature) for feature in features}}
    columns = {"type": "object", "required": names, "additionalProperties": False,
               "properties": {feature.name: {"type": "array", "items": _feature_schema(feature),
                                             **n_rows} for feature in features}}
    summary, answers = _output(predictor.schema if predictor else None)
    errors = {"400": _error("Malformed JSON, wrong shape, types, features or values (NaN, "
                            "Infinity, out of range, an unknown category, null where the "
                            "feature is not nullable), too many rows, unknown signature"),
              "404": _error("No such model or version"),
              "413": _error(f"Body larger than {config.max_body_bytes} bytes"),
              "500": _error("Internal error"),
              "503": _error("The model is not loaded")}
    model_path = {"name": "name", "in": "path", "required": True,
                  "schema": {"type": "string", "enum": [name]}}
    version_path = {"name": "version", "in": "path", "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    "description": "Only the loaded model's version exists"
                                   + (f" ({predictor.version})" if predictor else "")}
    predict = {
        "summary": f"{summary} (TensorFlow Serving's predict)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/PredictRequest"}}}},
        "responses": {"200": {"description": "One output row per request row, in request "
                                             "order",
                              "content": {"application/json": {"schema": {
                                  "$ref": "#/components/schemas/PredictResponse"}}}},
                      **errors}}
    status = {"summary": "Model status (TensorFlow Serving's GetModelStatus)",
              "responses": {"200": {"description": "The loaded version, AVAILABLE",
                                    "content": {"application/json": {"schema": {
                                        "type": "object",
                                        "required": ["model_version_status"]}}}},
                            **{code: errors[code] for code in ("400", "404", "503")}}}
    metadata = {"summary": "The signature: one named input per feature",
                "responses": {"200": {"description": "TensorFlow Serving's metadata",
                                      "content": {"application/json": {"schema": {
                                          "type": "object",
                                          "required": ["model_spec", "metadata"]}}}},
                              **{code: errors[code] for code in ("400", "404", "503")}}}
    plain = {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    probe = {"description": "JSON status", "content": {"application/json": {"schema": {
        "type": "object", "required": ["status"]}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Prediction service: {name}",
                 "version": predictor.version if predictor else "unavailable",
                 "description": "TensorFlow Serving's REST API for one model. Every feature is "
                                "required in every row; a category is one of its strings; null "
                                "stands for a missing value where the feature is nullable. NaN, "
                                "Infinity and values outside each feature's range are refused "
                                "with a 400."},
        "paths": {
            "/v1/models/{name}:predict": {"post": {**predict, "parameters": [model_path]}},
            "/v1/models/{name}/versions/{version}:predict": {
                "post": {**predict, "parameters": [model_path, version_path]}},
            "/v1/models/{name}": {"get": {**status, "parameters": [model_path]}},
            "/v1/models/{name}/versions/{version}": {
                "get": {**status, "parameters": [model_path, version_path]}},
            "/v1/models/{name}/metadata": {"get": {**metadata, "parameters": [model_path]}},
            "/v1/models/{name}/versions/{version}/metadata": {
                "get": {**metadata, "parameters": [model_path, version_path]}},
            "/healthz": {"get": {"summary": "Alive", "responses": {"200": probe}}},
            "/readyz": {"get": {"summary": "Ready for traffic",
                                "responses": {"200": probe, "503": probe}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": plain}}},
        },
        "components": {"schemas": {
            "Error": ERROR,
            "PredictRequest": {
                "type": "object",
                "properties": {
                    "signature_name": {"type": "string", "enum": ["", "serving_default"]},
                    "instances": {"oneOf": [{"type": "array", "items": named_row, **n_rows},
                                            {"type": "array", "items": row, **n_rows}]},
                    "inputs": {"oneOf": [columns, {"type": "array", "items": row, **n_rows}]}},
                "oneOf": [{"required": ["instances"], "not": {"required": ["inputs"]}},
                          {"required": ["inputs"], "not": {"required": ["instances"]}}],
                "examples": [{"instances": [predictor.example()]}] if predictor else []},
            "PredictResponse": {"oneOf": [
                {"type": "object", "required": ["predictions"], "additionalProperties": False,
                 "properties": {"predictions": answers}},
                {"type": "object", "required": ["outputs"], "additionalProperties": False,
                 "properties": {"outputs": answers}}]},
        }},
    }


@bp.get("/openapi.json")
def openapi():
    return json_response(document(current_app.extensions["service"]))
