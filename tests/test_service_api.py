"""The service through Flask's test client on the session's real model (the active data set)
and on a small model of each task: TensorFlow Serving's routes and shapes, the answer of each
task, every refusal, health, readiness, metrics, request ids and logs."""
from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from service_tasks import active_data, encoded, real_rows as csv_rows

from contract.schema import TASKS, Schema
from service import create_app, openapi, state
from service.config import Config
from service.predictor import ModelError, Predictor
from service.validation import BatchParser, InvalidRequest

PREDICT = "/v1/models/model:predict"


@pytest.fixture(scope="module")
def model(model_dir):
    return Predictor(model_dir)


@pytest.fixture(scope="module")
def real_rows(model):
    """Rows of the active data set's CSV, as a client sends them (the model's test of sense)."""
    schema, path = active_data()
    assert schema == model.schema
    return csv_rows(schema, path, 40)


def numeric(model, bounded: bool = False):
    """The first float or int feature (with a minimum, if `bounded`)."""
    return next(f for f in model.schema.features
                if not f.is_category and (f.minimum is not None or not bounded))


def post(client, body, path=PREDICT, **kwargs):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, **kwargs)


def error_of(response) -> str:
    assert response.content_type == "application/json"
    return response.get_json()["error"]


# --- model status and metadata ----------------------------------------------------------

def test_status_is_tf_servings(client, model):
    response = client.get("/v1/models/model")
    assert response.status_code == 200
    assert response.get_json() == {"model_version_status": [{
        "version": model.version, "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get(f"/v1/models/model/versions/{model.version}").get_json() \
        == response.get_json()
    # TF Serving matches its paths case-insensitively
    assert client.get("/V1/Models/model").status_code == 200


@pytest.mark.parametrize("path, status, message", [
    ("/v1/models/other", 404, "Could not find any versions of model other"),
    ("/v1/models/model/versions/1", 404, "Could not find version 1 of model model"),
    ("/v1/models/other/metadata", 404, "Could not find any versions of model other"),
    ("/v1/models", 400, "Missing model name in request."),
    ("/v1/models/model/versions/99999999999999999999", 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("/v1/models/model/labels/stable", 400, "Unrecognized servable version label: stable"),
])
def test_status_errors(client, path, status, message):
    response = client.get(path)
    assert response.status_code == status
    assert error_of(response) == message


def test_metadata_is_the_signature_from_the_schema(client, model):
    body = metadata_of(client, model)
    versioned = client.get(f"/v1/models/model/versions/{model.version}/metadata")
    assert versioned.get_json() == body


def metadata_of(client, model) -> dict:
    """/v1/models/model/metadata, checked: one named input per feature (a category's values
    are strings), one output [-1, K] named after what the task answers."""
    body = client.get("/v1/models/model/metadata").get_json()
    assert body["model_spec"] == {"name": "model", "signature_name": "",
                                  "version": model.version}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert list(signature["inputs"]) == list(model.schema.feature_names)
    for feature in model.schema.features:
        tensor = signature["inputs"][feature.name]
        assert tensor["dtype"] == {"float": "DT_FLOAT", "int": "DT_INT64",
                                   "category": "DT_STRING"}[feature.dtype]
        assert tensor["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}],
                                          "unknown_rank": False}
    name = {"binary": "probability", "multiclass": "probabilities",
            "regression": "value"}[model.schema.task]
    assert list(signature["outputs"]) == [name]
    assert signature["outputs"][name]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""}, {"size": str(len(model.schema.outputs)), "name": ""}]
    return body


def check_answers(schema, predictions) -> np.ndarray:
    """The answer the task promises for each row: [p_positive], one probability per label
    (summing to 1), or [value]."""
    got = np.array(predictions)
    assert got.ndim == 2 and got.shape[1] == len(schema.outputs)
    assert np.isfinite(got).all()
    if schema.task != "regression":
        assert ((0 <= got) & (got <= 1)).all()
    if schema.task == "multiclass":
        np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    return got


# --- predict ------------------------------------------------------------------------------

def test_the_four_formats_give_the_same_answers(client, model, real_rows):
    names = model.schema.feature_names
    lists = [[row[name] for name in names] for row in real_rows]
    answers = {
        "named rows": post(client, {"instances": real_rows}),
        "plain rows": post(client, {"instances": lists}),
        "named columns": post(client, {"inputs": {name: [row[name] for row in real_rows]
                                                  for name in names}}),
        "plain columns": post(client, {"inputs": lists}),
    }
    for format_, response in answers.items():
        assert response.status_code == 200, (format_, response.get_json())
    expected = answers["named rows"].get_json()["predictions"]
    assert len(check_answers(model.schema, expected)) == len(real_rows)
    assert answers["plain rows"].get_json() == {"predictions": expected}
    assert answers["named columns"].get_json() == {"outputs": expected}
    assert answers["plain columns"].get_json() == {"outputs": expected}


def test_predictions_are_the_keras_models(client, model_dir, real_rows, model):
    """The service's LiteRT answers match the Keras model that training saved."""
    import keras
    keras_model = keras.models.load_model(model_dir / "model.keras")
    x = np.array(encoded(model.schema, real_rows), dtype=np.float32)
    expected = keras_model.predict(x, verbose=0)
    got = check_answers(model.schema,
                        post(client, {"instances": real_rows}).get_json()["predictions"])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the rows are not all alike, and the model tells them apart
    if model.schema.task == "regression":
        assert np.ptp(got) > 0
    else:
        decided = got.argmax(axis=1) if got.shape[1] > 1 else got[:, 0] >= 0.5
        assert len(set(decided.tolist())) > 1


def test_predict_variants_tf_serving_accepts(client, model, real_rows):
    one = {"instances": real_rows[:1]}
    expected = post(client, one).get_json()
    for body, path in [
        ({**one, "signature_name": "serving_default"}, PREDICT),
        ({**one, "signature_name": ""}, PREDICT),
        ({**one, "ignored": "other keys are ignored"}, PREDICT),
        (one, f"/v1/models/model/versions/{model.version}:predict"),
        (one, "/V1/MODELS/model:PREDICT"),
    ]:
        response = post(client, body, path)
        assert response.status_code == 200, (body, path, response.get_json())
        assert response.get_json() == expected
    # integers are numbers too, and curl's default Content-Type is never checked
    integers = dict(real_rows[0])
    for feature in model.schema.features:
        value = integers[feature.name]
        if isinstance(value, float) and feature.problem(round(value)) is None:
            integers[feature.name] = round(value)
    response = post(client, {"instances": [integers]},
                    content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200


def test_one_interpreter_call_per_request(model_dir, real_rows):
    calls = []

    class Counting(Predictor):
        def predict(self, rows):
            calls.append(len(rows))
            return super().predict(rows)

    app = create_app(Config(model_dir=model_dir), Counting(model_dir))
    calls.clear()  # the warm-up
    rows = (real_rows * 26)[:1024]
    assert post(app.test_client(), {"instances": rows}).status_code == 200
    assert calls == [1024]


def test_interpreters_are_per_thread(model, real_rows):
    """Threads predicting at once with different batch sizes each get their own answers."""
    x = np.array(encoded(model.schema, real_rows), dtype=np.float32)
    expected = {n: model.predict(x[:n]).copy() for n in (1, 7, 40)}  # predict gives a view
    failures = []

    def work(n):
        for _ in range(200):
            if not np.array_equal(model.predict(x[:n]), expected[n]):
                failures.append(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 7, 40, 1, 7, 40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --- each task, on a model trained on a small data set with categories and missing values ----

@pytest.fixture(scope="module", params=TASKS)
def task(request, task_model_dirs):
    directory, data, _ = task_model_dirs[request.param]
    client = create_app(Config(model_dir=directory)).test_client()
    predictor = client.application.extensions["service"].predictor
    rows = csv_rows(predictor.schema, data, 24)
    assert {f.name for f in predictor.schema.features if f.nullable} \
        == {name for row in rows for name, value in row.items() if value is None}
    return SimpleNamespace(directory=directory, client=client, model=predictor,
                           schema=predictor.schema, rows=rows)


def test_each_task_answers_as_tf_serving_would(task):
    """binary [[p_positive]], multiclass [[p_label1..p_labelK]] in the schema's label order,
    regression [[value]]: the Keras model's own answers, in every request format."""
    import keras
    response = post(task.client, {"instances": task.rows})
    assert response.status_code == 200, response.get_json()
    got = check_answers(task.schema, response.get_json()["predictions"])
    expected = keras.models.load_model(task.directory / "model.keras").predict(
        np.array(encoded(task.schema, task.rows), dtype=np.float32), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)  # float32 round-off
    if task.schema.task == "regression":
        assert got.max() > 1  # the value itself, not a probability
    names = task.schema.feature_names
    lists = [[row[name] for name in names] for row in task.rows]
    columns = {name: [row[name] for row in task.rows] for name in names}
    for body, key in (({"instances": lists}, "predictions"), ({"inputs": columns}, "outputs"),
                      ({"inputs": lists}, "outputs")):
        assert post(task.client, body).get_json() == {key: got.tolist()}, body


def test_categories_and_nulls_become_the_contracts_input(task):
    """A category is its index in the schema's categories, null is NaN (the model imputes)."""
    parser = BatchParser(task.schema, 100)
    batch = parser.parse({"instances": task.rows}).rows
    assert batch.dtype == np.float32 and batch.shape == (len(task.rows), len(task.schema.features))
    for row, values in zip(task.rows, batch):
        for feature, value in zip(task.schema.features, values):
            given = row[feature.name]
            if given is None:
                assert math.isnan(value)
            elif feature.is_category:
                assert feature.categories[int(value)] == given
            else:
                assert value == np.float32(given)


def scrape(client) -> dict:
    """Every sample of /metrics: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(client.get("/metrics").get_data(
                as_text=True)) for sample in family.samples}


def test_each_task_counts_the_distribution_of_its_predictions(task):
    """predictions_total{label}: the predicted label of each row (binary: the positive label
    from the manifest's threshold on, multiclass: the most probable), not for regression;
    prediction_value: the positive or top label's probability in tenths, or the value. As
    prometheus_client would count them one at a time."""
    from prometheus_client import CollectorRegistry, Histogram

    from service.metrics import VALUE_BUCKETS
    before = scrape(task.client)
    answers = np.array(post(task.client, {"instances": task.rows}).get_json()["predictions"])
    post(task.client, {"instances": task.rows[:3]})
    answers = np.vstack([answers, answers[:3]])
    after = scrape(task.client)
    delta = {key: value - before.get(key, 0.0) for key, value in after.items()
             if key[0].startswith("prediction")}
    schema = task.schema
    if schema.task == "binary":
        positive = answers[:, 0] >= task.model.manifest.threshold
        labels = {schema.positive_label: positive.sum(), schema.negative_label: (~positive).sum()}
        values = answers[:, 0]
    elif schema.task == "multiclass":
        labels = {label: (answers.argmax(axis=1) == index).sum()
                  for index, label in enumerate(schema.labels)}
        values = answers.max(axis=1)
    else:
        labels, values = {}, answers[:, 0]
    counted = {dict(key[1])["label"]: value for key, value in delta.items()
               if key[0] == "predictions_total" and value}
    assert counted == {label: count for label, count in labels.items() if count}
    assert sum(counted.values()) == (0 if schema.task == "regression" else len(answers))
    buckets = VALUE_BUCKETS if schema.task == "regression" else (
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    one_by_one = Histogram("prediction_value", "", buckets=buckets,
                           registry=CollectorRegistry())
    for value in values:
        one_by_one.observe(float(value))
    [family] = one_by_one.collect()
    expected = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for sample in family.samples}
    observed = {key: value for key, value in delta.items() if key[0] != "predictions_total"}
    assert observed.keys() == expected.keys()
    for key, value in expected.items():
        assert observed[key] == pytest.approx(value, rel=1e-6), key


PENGUIN = Schema.from_dict({
    "task": "multiclass", "target": "species", "labels": ["Adelie", "Chinstrap", "Gentoo"],
    "features": [
        {"name": "island", "dtype": "category", "categories": ["Biscoe", "Dream", "Torgersen"]},
        {"name": "bill_length_mm", "dtype": "float", "minimum": 10, "nullable": True},
        {"name": "sex", "dtype": "category", "categories": ["female", "male"], "nullable": True},
        # categories spelled like numbers: a JSON 10 is the category "10"
        {"name": "clutch", "dtype": "category", "categories": ["1", "2", "10"]}]})


def test_a_row_by_hand():
    parser = BatchParser(PENGUIN, 10)
    row = {"island": "Dream", "bill_length_mm": None, "sex": "male", "clutch": "10"}
    expected = np.array([[1, np.nan, 1, 2]], dtype=np.float32)
    np.testing.assert_array_equal(parser.parse({"instances": [row]}).rows, expected)
    np.testing.assert_array_equal(parser.parse({"instances": [{**row, "clutch": 10}]}).rows,
                                  expected)
    with pytest.raises(InvalidRequest, match="feature 'clutch' of item 0 of 'instances': "
                                             "unknown category 3"):
        parser.parse({"instances": [{**row, "clutch": 3}]})
    # and the OpenAPI document lists what is taken
    described = [openapi._feature_schema(feature) for feature in PENGUIN.features]
    assert [d.get("enum") for d in described] == [
        ["Biscoe", "Dream", "Torgersen"], None, ["female", "male", None],
        ["1", "2", "10", 1, 2, 10]]
    assert described[1]["type"] == ["number", "null"] and described[1]["minimum"] == 10


def test_each_task_refuses_with_the_feature_named(task):
    schema, row = task.schema, task.rows[0]
    category = next(f for f in schema.features if f.is_category)
    response = post(task.client, {"instances": [row, {**row, category.name: "Atlantis"}]})
    assert response.status_code == 400
    message = error_of(response)
    assert message.startswith(f"feature '{category.name}' of item 1 of 'instances': unknown "
                              f"category 'Atlantis'"), message
    assert all(repr(value) in message for value in category.categories), message
    required = next(f for f in schema.features if not f.nullable)
    response = post(task.client, {"inputs": {**{name: [row[name]] for name in row},
                                             required.name: [None]}})
    assert response.status_code == 400
    assert error_of(response).startswith(f"feature '{required.name}' of item 0 of 'inputs': a "
                                         f"value is required")
    # a nullable feature is sent as null, never left out: every feature is a named input
    nullable = next(f for f in schema.features if f.nullable)
    response = post(task.client, {"instances": [{k: v for k, v in row.items()
                                                 if k != nullable.name}]})
    assert response.status_code == 400
    assert f"missing feature(s): '{nullable.name}'" in error_of(response)


def test_each_task_describes_its_output(task):
    metadata_of(task.client, task.model)
    document = task.client.get("/openapi.json").get_json()
    summary = document["paths"]["/v1/models/{name}:predict"]["post"]["summary"]
    answer = document["components"]["schemas"]["PredictResponse"]["oneOf"][0]
    rows = answer["properties"]["predictions"]["items"]
    width = len(task.schema.outputs)
    assert (rows["minItems"], rows["maxItems"]) == (width, width)
    if task.schema.task == "binary":
        assert f"Probability of '{task.schema.positive_label}'" in summary
    elif task.schema.task == "multiclass":
        assert ", ".join(task.schema.labels) in summary
    else:
        assert task.schema.target in summary and "maximum" not in rows["items"]
    named = document["components"]["schemas"]["PredictRequest"]["properties"]["instances"]
    properties = named["oneOf"][0]["items"]["properties"]
    for feature in task.schema.features:
        described = properties[feature.name]
        if feature.is_category:
            assert described["enum"][:len(feature.categories)] == list(feature.categories)
            assert (None in described["enum"]) == feature.nullable
        else:
            assert ("null" in described["type"]) == feature.nullable


def test_each_tasks_page(task):
    """Categories as choices, nullable fields optional, the answer shown for the task."""
    from html.parser import HTMLParser

    fields = {}

    class Fields(HTMLParser):
        current = None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag in ("input", "select") and attrs.get("name"):
                self.current = fields[attrs["name"]] = {"tag": tag, **attrs, "options": []}
            elif tag == "option":
                self.current["options"].append(attrs.get("value"))
            elif tag == "output" and attrs.get("id"):
                fields["#" + attrs["id"]] = attrs

        def handle_data(self, data):
            if self.current is not None and self.current["options"] and data.strip() \
                    and self.current["options"][-1] is None:
                self.current["options"][-1] = data.strip()

    response = task.client.get("/")
    assert response.status_code == 200
    Fields().feed(response.get_data(as_text=True))
    for feature in task.schema.features:
        field = fields[feature.name]
        assert ("required" in field) != feature.nullable, feature
        if feature.is_category:
            assert field["tag"] == "select"
            assert field["options"] == [""] * feature.nullable + list(feature.categories)
        else:
            assert field["tag"] == "input" and field["type"] == "number"
    shown = {"binary": {"#probability", "#class"}, "multiclass": {"#class"},
             "regression": {"#value"}}[task.schema.task]
    assert shown == {key for key in fields if key.startswith("#")}


def test_without_a_fitting_example_typical_values_are_shown(task, tmp_path):
    """An example row that does not fit the schema is not shown: each feature's first
    category, or the middle of its range, is; the model warms up with it."""
    import shutil
    copy = shutil.copytree(task.directory, tmp_path / "model")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["example"] = {name: "not a value" for name in task.schema.feature_names}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    predictor = Predictor(copy)
    example = predictor.example()
    assert list(example) == list(task.schema.feature_names)
    for feature in task.schema.features:
        assert example[feature.name] == (feature.categories[0] if feature.is_category
                                         else (feature.minimum + feature.maximum) / 2)
    assert check_answers(task.schema, [predictor.warm_up()]).shape == (1, len(task.schema.outputs))


def test_the_model_must_give_what_the_task_promises(task_model_dirs, tmp_path):
    """The output width follows the task, and the warm-up answer must be of the task's kind."""
    import shutil
    copy = shutil.copytree(task_model_dirs["multiclass"][0], tmp_path / "m")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema"]["labels"].append("huge")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"give one \[N, 4\] output \(4 probabilities summing "
                                         r"to 1.*gives \[N, 3\]"):
        Predictor(copy)
    copy = shutil.copytree(task_model_dirs["regression"][0], tmp_path / "r")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema"].update(task="binary", labels=["cheap", "dear"], positive_label="dear")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"answered \[.+\] for the example row, not "
                                         r"the probability of 'dear'"):
        Predictor(copy).warm_up()


# --- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", PREDICT), ("POST", "/v1/models/model"), ("PUT", PREDICT), ("DELETE", PREDICT),
    ("PATCH", "/v1/models/model/metadata"), ("GET", "/v1/foo"), ("POST", "/v1/"),
    ("GET", "/v1/models/model/versions/x"), ("GET", "/v1/models/model/"),
    ("OPTIONS", PREDICT), ("HEAD", "/v1/models/model"),
])
def test_malformed_requests(client, method, path):
    response = client.open(path, method=method)
    assert response.status_code == 400
    assert response.content_type == "application/json"
    if method != "HEAD":
        assert error_of(response) == f"Malformed request: {method} {path}"


@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_no_classify_or_regress_signature(client, verb, real_rows):
    response = post(client, {"examples": real_rows[:1]}, f"/v1/models/model:{verb}")
    assert response.status_code == 400
    assert f"tensorflow/serving/{verb}" in error_of(response)


def test_unknown_model_and_version(client, real_rows):
    body = {"instances": real_rows[:1]}
    response = post(client, body, "/v1/models/other:predict")
    assert (response.status_code, error_of(response)) == (
        404, "Servable not found for request: Latest(other)")
    response = post(client, body, "/v1/models/model/versions/7:predict")
    assert (response.status_code, error_of(response)) == (
        404, "Servable not found for request: Specific(model, 7)")


def _row(model, **changes):
    row = model.example()
    row.update(changes)
    return row


BAD_BODIES = {
    "empty body": (b"", "The document is empty"),
    "not JSON": (b"{instances: 1}", "JSON Parse error"),
    "not an object": (b"[1, 2]", "Is not object"),
    "NaN": (b'{"instances": [[NaN]]}', "NaN is not accepted"),
    "Infinity": (b'{"instances": [[Infinity]]}', "Infinity is not accepted"),
    "-Infinity": (b'{"instances": [[-Infinity]]}', "-Infinity is not accepted"),
    "overflowing number": (b'{"instances": [[1e999]]}', "infinity"),
    "invalid UTF-8": (b'{"instances": "\xff"}', "UTF-8"),
    "deep nesting": (b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                     "JSON Parse error"),
    "neither key": ({"rows": []}, "Missing 'inputs' or 'instances' key"),
    "both keys": ({"instances": [[1]], "inputs": [[1]]}, "only one of 'inputs' or 'instances'"),
    "signature_name not a string": ({"signature_name": 1, "instances": [[1]]},
                                    "'signature_name' key must be a string"),
    "unknown signature": ({"signature_name": "x", "instances": [[1]]},
                          'Serving signature name: "x" not found in signature def'),
    "instances not a list": ({"instances": {"a": 1}}, "Expecting 'instances' to be a list"),
    "empty instances": ({"instances": []}, "No values in 'instances' array"),
    "scalar instance": ({"instances": [1]}, "got number at item 0"),
    "empty inputs": ({"inputs": []}, "No values in 'inputs' array"),
    "inputs a string": ({"inputs": "x"}, "'inputs' must be an object"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_bodies(client, name):
    body, message = BAD_BODIES[name]
    response = post(client, body)
    assert response.status_code == 400
    assert message in error_of(response)


def test_bad_rows_name_the_feature_and_row(client, model):
    names = model.schema.feature_names
    first, last = names[0], names[-1]
    row = model.example()
    bounded = numeric(model, bounded=True)
    number, low = bounded.name, bounded.minimum
    required = next(f.name for f in model.schema.features if not f.nullable)
    cases = [
        ({"instances": [row, _row(model, **{number: "1.5"})]},
         f"feature '{number}' of item 1 of 'instances': expected a number, got a string"),
        ({"instances": [_row(model, **{number: True})]},
         f"feature '{number}' of item 0 of 'instances': expected a number, got a boolean"),
        ({"instances": [_row(model, **{required: None})]},
         f"feature '{required}' of item 0 of 'instances': a value is required"),
        ({"inputs": [list(row.values()), list(_row(model, **{required: None}).values())]},
         f"feature '{required}' of item 1 of 'inputs': a value is required"),
        ({"instances": [_row(model, **{number: [1.0]})]}, "got an array"),
        ({"instances": [_row(model, **{number: low - 1})]},
         f"feature '{number}' of item 0 of 'instances': {low - 1} is below the minimum"),
        ({"instances": [_row(model, **{number: 1e300})]}, f"feature '{number}' of item 0"),
        ({"instances": [{**row, "colour": 1}]}, "unknown feature(s): 'colour'"),
        ({"instances": [{k: v for k, v in row.items() if k != last}]},
         f"missing feature(s): '{last}'"),
        ({"instances": [row, [1.0] * len(names)]}, "Expecting object but got array at item 1"),
        ({"instances": [[1.0] * len(names), row]}, "got object at item 1 of 'instances'"),
        ({"instances": [[1.0] * (len(names) - 1)]},
         f"Expecting tensor size: {len(names)} but got: {len(names) - 1}"),
        ({"inputs": {name: [row[name]] for name in names[1:]}},
         f"Missing named input: {first} in 'inputs' object."),
        ({"inputs": {**{name: [row[name]] for name in names}, "colour": [1]}},
         "unknown feature(s): 'colour'"),
        ({"inputs": {**{name: [row[name]] for name in names}, last: [1, 2]}},
         f"Expecting tensor size: 1 but got: 2 (named input '{last}'"),
        ({"inputs": {name: row[name] for name in names}},
         f"named input '{first}' must be a list"),
        ({"inputs": {name: [] for name in names}}, f"No values in named input '{first}'"),
        ({"inputs": [[1.0] * len(names), 3]}, "item 1 is number"),
    ]
    for body, message in cases:
        response = post(client, body)
        assert response.status_code == 400, body
        assert message in error_of(response), (message, error_of(response))


def test_a_feature_without_bounds_still_refuses_what_float32_cannot_hold(model_dir, tmp_path):
    """1e39 fits a JSON number and a float64, not the model's float32 input."""
    import shutil
    copy = shutil.copytree(model_dir, tmp_path / "model")
    manifest = json.loads((copy / "manifest.json").read_text())
    [feature] = [f for f in manifest["schema"]["features"]
                 if f["name"] == numeric(Predictor(copy)).name]
    feature["maximum"] = None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    client = create_app(Config(model_dir=copy)).test_client()
    row = Predictor(copy).example()
    response = post(client, {"instances": [{**row, feature["name"]: 1e39}]})
    assert response.status_code == 400
    assert f"feature '{feature['name']}' of item 0 of 'instances': 1e+39 is too large for " \
           f"float32" in error_of(response)


def test_row_and_body_limits(model_dir, model):
    client = create_app(Config(model_dir=model_dir, max_rows=3, max_body_bytes=4000)) \
        .test_client()
    row = model.example()
    assert post(client, {"instances": [row] * 3}).status_code == 200
    response = post(client, {"instances": [row] * 4})
    assert response.status_code == 400
    assert "'instances' has 4 rows, more than this service takes in one request " \
           "(MAX_ROWS=3)" in error_of(response)
    columns = {name: [value] * 4 for name, value in row.items()}
    assert "MAX_ROWS=3" in error_of(post(client, {"inputs": columns}))
    response = post(client, {"instances": [row] * 3, "padding": "x" * 4000})
    assert response.status_code == 413
    assert error_of(response) == "Request body larger than 4000 bytes (MAX_BODY_BYTES)"


# --- operations ------------------------------------------------------------------------------

def test_health_and_readiness(client, model):
    assert client.get("/healthz").get_json() == {"status": "alive"}
    assert client.get("/readyz").get_json() == {"status": "ready", "model_name": "model",
                                                "model_version": model.version}


@pytest.fixture
def shutdown():
    state.begin_shutdown()
    yield
    state._shutting_down.clear()  # the flag is per process; this test process goes on


def test_readiness_fails_once_shutdown_begins(client, shutdown):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unready", "reason": "shutting down"}
    assert client.get("/healthz").status_code == 200


def test_metrics(client, model, real_rows):
    before = client.get("/metrics").get_data(as_text=True)
    post(client, {"instances": real_rows[:5]})
    post(client, {"instances": []})
    text = client.get("/monitoring/prometheus/metrics").get_data(as_text=True)

    def value(text, line_start):
        lines = [line for line in text.splitlines() if line.startswith(line_start)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    ok = 'http_requests_total{method="POST",route="/v1/models/{name}:predict",status="200"}'
    bad = 'http_requests_total{method="POST",route="/v1/models/{name}:predict",status="400"}'
    rows = f'predict_rows_total{{model_name="model",model_version="{model.version}"}}'
    assert value(text, ok) == value(before, ok) + 1
    assert value(text, bad) == value(before, bad) + 1
    assert value(text, rows) == value(before, rows) + 5
    assert f'model_info{{model_name="model",model_version="{model.version}",' \
           f'sha256="{model.manifest.model_sha256}"}} 1.0' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",route="/v1/models/{name}:predict"}' \
        in text


def test_request_ids(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32 and made != client.get("/healthz").headers["X-Request-ID"]
    unsafe = client.get("/healthz", headers={"X-Request-ID": "a b\x7f" + "x" * 200})
    assert len(unsafe.headers["X-Request-ID"]) == 32
    assert float(given.headers["Server-Timing"].split("dur=")[1]) >= 0


def request_lines(capsys) -> list[dict]:
    """The JSON lines the requests so far wrote to stderr (service/logs.py, log_request)."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()
            if '"message":"request"' in line]


def test_one_log_line_per_request_without_feature_values(client, capsys, real_rows):
    capsys.readouterr()
    post(client, {"instances": real_rows[:2]}, headers={"X-Request-ID": "trace-1"})
    [line] = request_lines(capsys)
    assert (line["method"], line["path"], line["status"], line["rows"], line["request_id"]) == (
        "POST", PREDICT, 200, 2, "trace-1")
    assert line["latency_ms"] >= 0 and line["route"] == "/v1/models/{name}:predict"
    assert line["level"] == "info" and line["logger"] == "service" and "features" not in line


def test_feature_values_are_logged_only_when_asked(model_dir, model, capsys, real_rows):
    client = create_app(Config(model_dir=model_dir, log_features=True)).test_client()
    capsys.readouterr()
    post(client, {"instances": real_rows[:1]})
    [line] = request_lines(capsys)
    # the model's input: a category as its index, a missing value (NaN) as null
    [expected] = encoded(model.schema, real_rows[:1])
    assert line["features"] == [[None if math.isnan(v) else pytest.approx(v) for v in expected]]


def test_errors_outside_v1_are_json(client):
    response = client.get("/nowhere")
    assert (response.status_code, error_of(response)) == (404, "Not found: /nowhere")
    response = client.post("/healthz")
    assert (response.status_code, error_of(response)) == (
        405, "Method POST not allowed on /healthz")


def test_an_unexpected_error_in_v1_is_a_logged_500_in_the_same_shape(client, capsys, caplog,
                                                                     monkeypatch, real_rows):
    """/v1/ is answered without Flask (service/api.py): an error no code path expects (here a
    model that raises, put in by hand: a working one does not) is still a 500 with a JSON error,
    its traceback logged, the request counted and given its line."""
    def broken(rows):
        raise RuntimeError("the interpreter broke")

    monkeypatch.setattr(client.application.extensions["service"].predictor, "predict", broken)
    logging.getLogger("service").addHandler(caplog.handler)
    try:
        capsys.readouterr()
        response = post(client, {"instances": real_rows[:1]})
    finally:
        logging.getLogger("service").removeHandler(caplog.handler)
    assert response.status_code == 500
    assert "internal error" in error_of(response)
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == f"Exception on {PREDICT} [POST]"
    assert "the interpreter broke" in str(record.exc_info[1])
    [line] = request_lines(capsys)
    assert (line["status"], line["route"]) == (500, "/v1/models/{name}:predict")
    assert "internal error" in line["error"]


def test_config_from_environment():
    config = Config.from_env({"MODEL_DIR": "/m", "MODEL_NAME": "cancer", "MAX_ROWS": "10",
                              "MAX_BODY_BYTES": "2048", "LOG_FEATURES": "true", "PORT": "1"})
    assert config == Config(model_dir=Path("/m"), model_name="cancer",
                            max_rows=10, max_body_bytes=2048, log_features=True)
    assert Config.from_env({}) == Config()
    for environ, message in [({"MAX_ROWS": "many"}, "MAX_ROWS must be an integer"),
                             ({"MAX_ROWS": "0"}, "MAX_ROWS must be a positive integer"),
                             ({"LOG_FEATURES": "maybe"}, "LOG_FEATURES must be true or false")]:
        with pytest.raises(ValueError, match=message):
            Config.from_env(environ)
