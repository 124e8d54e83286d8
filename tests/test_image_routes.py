"""Every route of the BUILT image, against a container of it run as production runs it
(read-only, non-root, host network): what the image ships, not what the source tree has.
The try-it page is driven in headless Chromium against the container. Bad requests are 4xx
with a JSON error, never 5xx, on every route."""
from __future__ import annotations

import json
import re

import pytest
import requests

from deploy.docker_driver import RUN_OPTIONS, SERVICE_LABEL
from deploy.smoke import free_port, wait_ready
from test_service_api import BAD_BODIES
from test_service_gunicorn import chromium_driver

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def url(engine, images):
    port = free_port()
    container = engine.containers.run(
        images["1.0.0"], detach=True, **RUN_OPTIONS,
        environment={"PORT": str(port), "MODEL_NAME": "model"},
        labels={SERVICE_LABEL: f"routes-test-{port}"})
    try:
        address = f"http://127.0.0.1:{port}"
        wait_ready(address, container, timeout=60)
        yield address
        assert b"Traceback" not in container.logs(), container.logs(tail=40).decode()
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def manifest(model_dir):
    return json.loads((model_dir / "manifest.json").read_text())


def test_the_try_it_page_and_its_static_files(url):
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<form id="predict"' in page.text
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert {"css", "js"} <= {asset.rsplit(".", 1)[1] for asset in assets}, assets
    for asset in assets:
        answer = requests.get(url + asset, timeout=10)
        assert answer.status_code == 200, asset
        assert answer.content, asset
    assert requests.get(url + "/static/no-such-file.js", timeout=10).status_code == 404


def test_every_get_route_in_openapi_answers(url, manifest):
    document = requests.get(url + "/openapi.json", timeout=10).json()
    values = {"name": "model", "version": str(manifest["version"])}
    gets = [path for path, item in document["paths"].items() if "get" in item]
    assert {"/healthz", "/readyz", "/metrics"} <= set(gets)
    assert any(path.startswith("/v1/models/") for path in gets)
    for path in gets:
        concrete = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        answer = requests.get(url + concrete, timeout=10)
        assert answer.status_code == 200, f"GET {concrete}: {answer.status_code} {answer.text}"


def test_predict_health_and_metrics(url, manifest):
    example = manifest["example"]
    for path in ("/v1/models/model:predict",
                 f"/v1/models/model/versions/{manifest['version']}:predict"):
        answer = requests.post(url + path, json={"instances": [example, example]}, timeout=10)
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["predictions"]
        assert first == second and 0.0 <= first[0] <= 1.0
    assert requests.get(url + "/healthz", timeout=10).status_code == 200
    assert requests.get(url + "/readyz", timeout=10).json()["status"] == "ready"
    metrics = requests.get(url + "/metrics", timeout=10).text
    assert re.search(r'^\w+_requests_total\{.*route=.*\} [1-9]', metrics, re.MULTILINE), \
        metrics[:2000]


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_bodies_are_4xx_with_a_message(url, name):
    body, message = BAD_BODIES[name]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = requests.post(url + "/v1/models/model:predict", data=data, timeout=10)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v1/models/model:predict", 400), ("DELETE", "/v1/models/model", 400),
    ("POST", "/v1/models/other:predict", 404), ("GET", "/v1/models/model/versions/7", 404),
    ("GET", "/no/such/route", 404), ("POST", "/", 405), ("PUT", "/healthz", 405),
    ("DELETE", "/metrics", 405), ("POST", "/openapi.json", 405),
    ("GET", "/static/../templates/index.html", 404),
])
def test_wrong_routes_and_methods_are_4xx(url, manifest, method, path, status):
    answer = requests.request(method, url + path, timeout=10,
                              json={"instances": [manifest["example"]]})
    assert answer.status_code == status, answer.text


def test_an_oversized_body_is_413(url, manifest):
    answer = requests.post(url + "/v1/models/model:predict", timeout=10,
                           data=b'{"instances": [' + b"1," * 3_000_000 + b"1]}")
    assert answer.status_code == 413


@pytest.mark.browser
def test_try_it_page_in_a_browser_against_the_image(url, manifest):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    answer = requests.post(url + "/v1/models/model:predict",
                           json={"instances": [manifest["example"]]}, timeout=10)
    [[expected]] = answer.json()["predictions"]
    browser = chromium_driver()
    try:
        browser.get(url + "/")
        # The style sheet from the image applies (a missing one leaves the page unstyled).
        assert browser.execute_script(
            "return [...document.styleSheets].some(s => s.cssRules.length > 0)")
        browser.find_element(By.CSS_SELECTOR, "#predict button").click()
        WebDriverWait(browser, 10).until(
            lambda b: b.find_element(By.ID, "result").is_displayed())
        shown = float(browser.find_element(By.ID, "probability").text)
        assert shown == pytest.approx(expected, abs=5e-5)
        errors = [entry for entry in browser.get_log("browser")
                  if "favicon.ico" not in entry["message"]]  # the page names none
        assert errors == []
    finally:
        browser.quit()
