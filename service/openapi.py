"""The OpenAPI 3.1 document, built from the loaded model's schema: the request formats with
each feature's type and range, the answers, and every error the API gives."""
from __future__ import annotations

from flask import Blueprint, current_app

from service.api import json_response

bp = Blueprint("openapi", __name__)

ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
         "properties": {"error": {"type": "string"}}}


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _feature_schema(feature) -> dict:
    schema = {"type": "integer" if feature.dtype == "int" else "number"}
    if feature.minimum is not None:
        schema["minimum"] = feature.minimum
    if feature.maximum is not None:
        schema["maximum"] = feature.maximum
    if feature.description:
        schema["description"] = feature.description
    return schema


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
    probabilities = {"type": "array", "items": {
        "type": "array", "minItems": 1, "maxItems": 1,
        "items": {"type": "number", "minimum": 0, "maximum": 1}}}
    positive = predictor.schema.positive_label if predictor else "the positive label"
    errors = {"400": _error("Malformed JSON, wrong shape, types, features or values (NaN, "
                            "Infinity, out of range), too many rows, unknown signature"),
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
        "summary": f"Probability of '{positive}' for each row (TensorFlow Serving's predict)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/PredictRequest"}}}},
        "responses": {"200": {"description": "One probability per row, in request order",
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
                 "description": "TensorFlow Serving's REST API for one model. NaN, Infinity and "
                                "values outside each feature's range are refused with a 400."},
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
                 "properties": {"predictions": probabilities}},
                {"type": "object", "required": ["outputs"], "additionalProperties": False,
                 "properties": {"outputs": probabilities}}]},
        }},
    }


@bp.get("/openapi.json")
def openapi():
    return json_response(document(current_app.extensions["service"]))
