"""A property-based fuzz of the predict route (hypothesis), for the active data set's model and
a model of each task trained on a small data set (binary, multiclass, regression; categories
and missing values). Bodies valid and broken in every way the API can see (shapes, types,
names, lengths, ranges, categories, nulls, NaN and Infinity, broken JSON, too many rows, too
large), on the plain and the versioned route, for the loaded model and others. Whatever comes
in, the answer is never a 5xx, its status is one the service's own /openapi.json lists for
that route, its body is valid against the schema listed there, and a 200 answers only a
request that the document's request schema allows. The document's GET routes are held to the
same, for the loaded version and another."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from contract.schema import TASKS
from service import create_app
from service.config import Config

pytestmark = pytest.mark.trains  # every test here runs on a trained model (some chosen late)

MAX_ROWS = 8
MAX_BODY_BYTES = 16 * 1024
PLAIN, VERSIONED = "/v1/models/{name}:predict", "/v1/models/{name}/versions/{version}:predict"


@pytest.fixture(scope="module", params=["active data set", *TASKS])
def fuzzed(request):
    """For the active data set's model or a small one of a task: the app with small limits
    (so "too many rows" and "too large" are reachable), its client, its schema, its version,
    and for each (route, method, status) that its OpenAPI document lists a validator of the
    JSON body (None for another content type)."""
    model_dir = (request.getfixturevalue("model_dir") if request.param == "active data set"
                 else request.getfixturevalue("task_model_dirs")[request.param][0])
    app = create_app(Config(model_dir=model_dir, max_rows=MAX_ROWS,
                            max_body_bytes=MAX_BODY_BYTES))
    client = app.test_client()
    document = client.get("/openapi.json").get_json()
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012))

    def validator(*pointer: str) -> Draft202012Validator:
        escaped = "/".join(part.replace("~", "~0").replace("/", "~1") for part in pointer)
        return Draft202012Validator({"$ref": "urn:openapi#/" + quote(escaped)},
                                    registry=registry)

    validators = {}
    for route, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                json_body = "application/json" in response.get("content", {})
                validators[route, method, int(status)] = validator(
                    "paths", route, method, "responses", status, "content", "application/json",
                    "schema") if json_body else None
    accepted = validator("components", "schemas", "PredictRequest")
    service = app.extensions["service"]
    return client, service.predictor.schema, service.predictor.version, validators, accepted


def answers_as_documented(response, route: str, method: str, validators) -> None:
    status = response.status_code
    assert status < 500, response.get_data(as_text=True)
    assert (route, method, status) in validators, f"{status} is not documented for {route}"
    schema = validators[route, method, status]
    if schema is not None:
        assert response.mimetype == "application/json"
        answer = json.loads(response.get_data())
        errors = [error.message for error in schema.iter_errors(answer)]
        assert not errors, f"{status} {answer} does not match /openapi.json: {errors}"


def test_every_documented_get_route_answers_as_documented(fuzzed):
    client, _, version, validators, _ = fuzzed
    routes = sorted({route for route, method, _ in validators if method == "get"})
    assert "/v1/models/{name}/versions/{version}/metadata" in routes
    for route in routes:
        for served in {version, str(int(version) + 1)}:  # the loaded one, and one that is not
            path = route.replace("{name}", "model").replace("{version}", served)
            answers_as_documented(client.get(path), route, "get", validators)


json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
any_json = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def valid_row(draw, schema) -> dict:
    row = {}
    for feature in schema.features:
        low = -1e6 if feature.minimum is None else feature.minimum
        high = 1e6 if feature.maximum is None else feature.maximum
        if feature.is_category:
            values = st.sampled_from(feature.categories)
        elif feature.dtype == "int":
            values = st.integers(int(low), int(high))
        else:
            values = st.floats(low, high, allow_nan=False)
        row[feature.name] = draw(st.none() | values if feature.nullable else values)
    return row


@st.composite
def broken_value(draw, feature):
    """Anything JSON has that is not a valid value for the feature (or, for a category, a
    number or a near-miss string that may or may not spell one)."""
    if feature.is_category:
        near = [category.upper() for category in feature.categories] + ["", " ", "Atlantis"]
        return draw(st.sampled_from(near + [None, 0, 1, 2, 10, 2.0, 1e300, float("nan")])
                    | any_json)
    low = -1e6 if feature.minimum is None else feature.minimum
    high = 1e6 if feature.maximum is None else feature.maximum
    return draw(st.sampled_from([low - 1, high + 1, -1e300, 1e300, float("nan"), float("inf"),
                                 None])
                | any_json.filter(lambda v: not isinstance(v, (int, float)) or isinstance(v, bool)))


@st.composite
def rows_with_one_fault(draw, schema) -> list:
    """Valid rows, as objects keyed by name or as lists; most often one fault in one row, so
    that each kind of fault gets past everything that is right and reaches its own check."""
    count = draw(st.integers(0, MAX_ROWS + 2))
    rows = draw(st.lists(valid_row(schema), min_size=count, max_size=count))
    fault = draw(st.sampled_from(["none"] * 3 + ["value"] * 2 + ["drop", "extra", "short"]))
    if rows and fault != "none":
        row = rows[draw(st.integers(0, count - 1))]
        name = draw(st.sampled_from(schema.feature_names))
        if fault == "value":
            row[name] = draw(broken_value(schema.features[schema.feature_names.index(name)]))
        elif fault == "drop":
            del row[name]
        elif fault == "extra":
            row[draw(st.text(min_size=1, max_size=6))] = draw(json_scalars)
        else:
            row["short"] = None  # as a list: one value too many; named: an unknown feature
            if draw(st.booleans()):
                del row[name], row["short"]  # as a list: one value too few
    if draw(st.booleans()):
        return rows
    return [list(row.values()) for row in rows]


@st.composite
def predict_body(draw, schema) -> tuple[bytes, int | None]:
    """A body and, when it is shaped as a request, the number of rows it holds."""
    signature = draw(st.none() | st.sampled_from(["", "serving_default", "other", "predict"])
                     | json_scalars)
    rows = draw(rows_with_one_fault(schema))
    shape = draw(st.sampled_from(["instances", "instances", "inputs rows", "inputs columns",
                                  "both", "neither", "anything"]))
    if shape == "instances":
        document = {"instances": rows}
    elif shape == "inputs rows":
        document = {"inputs": rows}
    elif shape == "inputs columns":
        document = {"inputs": {name: [r.get(name) if isinstance(r, dict) else None
                                      for r in rows] for name in schema.feature_names}}
    elif shape == "both":
        document = {"instances": rows, "inputs": rows}
    elif shape == "neither":
        document = {"rows": rows}
    else:
        document = draw(any_json)
    if isinstance(document, dict) and signature is not None:
        document["signature_name"] = signature
    body = json.dumps(document, allow_nan=True).encode()  # NaN and Infinity as JS writes them
    cut = draw(st.sampled_from([None] * 9 + ["truncate", "pad"]))
    if cut == "truncate":
        body = body[:draw(st.integers(0, max(len(body) - 1, 0)))]
    elif cut == "pad":
        body = body + b" " * MAX_BODY_BYTES
    return body, len(rows) if shape != "anything" else None


@st.composite
def target(draw, version: str) -> tuple[str, str]:
    name = draw(st.sampled_from(["model"] * 8 + ["other", "Model"]))
    chosen = draw(st.sampled_from([None] * 4 + [version] * 4 + [str(int(version) + 1), "0"]))
    if chosen is None:
        return f"/v1/models/{name}:predict", PLAIN
    return f"/v1/models/{name}/versions/{chosen}:predict", VERSIONED


@pytest.mark.slow
def test_predict_never_fails_and_always_answers_as_documented(fuzzed):
    client, schema, version, validators, accepted = fuzzed

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=predict_body(schema), where=target(version))
    def check(body, where):
        (payload, rows), (path, route) = body, where
        response = client.post(path, data=payload, content_type="application/json")
        answers_as_documented(response, route, "post", validators)
        status, answer = response.status_code, json.loads(response.get_data())
        if status == 200:
            # and it answers only what the document says it takes
            assert not list(accepted.iter_errors(json.loads(payload))), payload
            assert rows is not None and 1 <= rows <= MAX_ROWS
            assert len(answer.get("predictions", answer.get("outputs"))) == rows
        else:
            assert answer["error"], "an error names what was wrong"

    check()


ROUTES = ["/", "/healthz", "/readyz", "/metrics", "/monitoring/prometheus/metrics",
          "/openapi.json", "/static/predict.js", "/static/style.css", "/v1/models/model",
          "/v1/models/model/metadata", "/v1/models/model:predict", "/v1/models/model:classify",
          "/v1/models/model/versions/1:predict", "/v1/models/model/labels/x:regress"]


@pytest.mark.slow
def test_no_route_answers_a_malformed_request_with_a_5xx(fuzzed):
    """Any method, a known route bent by a suffix (separators, dots, escapes, non-ASCII), a
    query string and any body: a 4xx with a JSON error or an answer, never a 5xx."""
    client = fuzzed[0]
    pieces = list("/.:%?&=#~ ab0") + ["%2F", "%00", "..", "é", "%ff", "\\"]
    suffixes = st.lists(st.sampled_from(pieces), max_size=6).map("".join)

    @settings(max_examples=150, deadline=None, database=None)
    @given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
           route=st.sampled_from(ROUTES), suffix=suffixes,
           body=st.binary(max_size=64) | st.builds(lambda v: json.dumps(v).encode(), any_json))
    def check(method, route, suffix, body):
        # Flask's test client reads "//x" as a host, not a path: it cannot send one.
        assume(not (route + suffix).startswith("//"))
        response = client.open(route + suffix, method=method, data=body,
                               headers={"Content-Type": "application/json"})
        assert response.status_code < 500, (method, route + suffix, response.get_data())
        if response.status_code >= 400 and method != "HEAD":
            assert response.get_json()["error"]

    check()
