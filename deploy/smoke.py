"""Smoke test of a built image: run it as it runs in production, ask it, compare, stop it.

The image runs read-only, as its non-root user, on the host network on a free port. The answer
to a real predict request must match what the model inside the image predicts for the same
rows when run here with LiteRT; the container must then stop cleanly on SIGTERM.
"""
from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import requests

from contract.manifest import Manifest
from deploy.docker_driver import RUN_OPTIONS, SERVICE_LABEL
from deploy.image import ImageError, docker_client, extract_model

TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sample_rows(schema: dict, quantiles=(0.1, 0.5, 0.9)) -> list[list]:
    """Valid rows as a request sends them (schema order, JSON values), one per quantile of each
    number's declared range; categories taken in turn; the middle row leaves every nullable
    feature missing (null)."""
    rows = []
    for i, q in enumerate(quantiles):
        row = []
        for feature in schema["features"]:
            low, high = feature.get("minimum"), feature.get("maximum")
            if feature.get("nullable") and i == len(quantiles) // 2:
                value = None
            elif feature["dtype"] == "category":
                value = feature["categories"][i % len(feature["categories"])]
            elif low is not None and high is not None:
                value = low + q * (high - low)
            elif low is not None:
                value = low + q
            elif high is not None:
                value = high - q
            else:
                value = q
            row.append(float(round(value)) if feature["dtype"] == "int" and value is not None
                       else value)
        rows.append(row)
    return rows


def local_predictions(model_dir: Path, rows: list[list]) -> list[list[float]]:
    """What the model predicts for the rows here, with LiteRT: [N, K] as the service answers."""
    import numpy as np

    from contract.litert import LiteRTModel
    manifest = Manifest.load(model_dir)
    x = np.array([[feature.encode(value) for feature, value in zip(manifest.schema.features, row)]
                  for row in rows], dtype=np.float32)
    model_file = model_dir / "model.tflite"
    return LiteRTModel(model_file.read_bytes(), str(model_file)).predict(x).tolist()


def wait_ready(url: str, container, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            raise ImageError("the container exited before it was ready:\n"
                             + container.logs(tail=20).decode(errors="replace"))
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ImageError(f"not ready after {timeout:g} s:\n"
                     + container.logs(tail=20).decode(errors="replace"))


def smoke(reference: str, model_name: str = "model", timeout: float = 60.0,
          client=None) -> dict:
    """Run the checks; return what was measured. Raises ImageError on any failure."""
    client = client or docker_client()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = extract_model(reference, Path(tmp), client)
        try:
            rows = sample_rows(Manifest.load(model_dir).raw["schema"])
            expected = local_predictions(model_dir, rows)
        except (ValueError, RuntimeError) as error:
            raise ImageError(f"the model in {reference} does not load: {error}") from error
    port = free_port()
    started = time.monotonic()
    container = client.containers.run(
        reference, detach=True, **RUN_OPTIONS,
        environment={"PORT": str(port), "MODEL_NAME": model_name},
        labels={SERVICE_LABEL: f"smoke-{port}"})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, container, timeout)
        ready_after = time.monotonic() - started
        response = requests.post(f"{url}/v1/models/{model_name}:predict",
                                 json={"instances": rows}, timeout=10)
        if response.status_code != 200:
            raise ImageError(f"predict answered {response.status_code}: {response.text[:300]}")
        got = response.json()["predictions"]
        worst = max(abs(a - b) for mine, theirs in zip(got, expected, strict=True)
                    for a, b in zip(mine, theirs, strict=True))
        if worst > TOLERANCE:
            raise ImageError(f"the service predicts {got}, the model in the image {expected}")
        user = client.api.exec_create(container.id, ["id", "-u"])["Id"]
        uid = client.api.exec_start(user).decode().strip()
        if uid == "0":
            raise ImageError("the service runs as root")
        container.stop(timeout=30)
        container.reload()
        code = container.attrs["State"]["ExitCode"]
        if code != 0:
            raise ImageError(f"the container exited with code {code} on SIGTERM:\n"
                             + container.logs(tail=20).decode(errors="replace"))
        return {"port": port, "ready_after_s": round(ready_after, 2), "uid": uid,
                "predictions": got, "max_difference": worst}
    finally:
        container.remove(force=True)
