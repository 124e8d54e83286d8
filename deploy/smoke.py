"""Smoke test of a built image: run it as it runs in production, ask it, compare, stop it.

The image runs read-only, as its non-root user, on the host network on a free port. The answer
to a predict request with real rows (the manifest's example and a few rows of the data set)
must match what the model inside the image predicts for them when run here with LiteRT; the
container must then stop cleanly on SIGTERM.
"""
from __future__ import annotations

import csv
import socket
import tempfile
import time
from pathlib import Path

import requests

from contract.manifest import Manifest
from deploy.docker_driver import RUN_OPTIONS, SERVICE_LABEL
from deploy.image import ImageError, docker_client, extract_model
from deploy.settings import Settings

TOLERANCE = 1e-5
DATA_DIR = Path("data")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smoke_rows(manifest: dict, data_dir: Path = DATA_DIR, count: int = 4
               ) -> tuple[list[list], str]:
    """Real rows as a request sends them (schema order, JSON values), and where they come
    from: the manifest's example row, plus `count` rows spread over the data set in data_dir
    when it has the model's features (a checkout may hold another data set than the one the
    image's model was trained on). A row with a missing value the schema refuses is skipped."""
    features = manifest["schema"]["features"]
    rows = [[manifest["example"].get(feature["name"]) for feature in features]]
    found = sorted(data_dir.glob("*.csv"))
    if len(found) != 1:
        return rows, "the manifest's example row"
    with found[0].open(newline="") as handle:
        table = list(csv.DictReader(handle))
    if not table or not {feature["name"] for feature in features} <= set(table[0]):
        return rows, f"the manifest's example row ({found[0]} has other features)"

    def value(feature: dict, cell: str):
        if cell == "":
            if not feature.get("nullable"):
                raise ValueError(f"{feature['name']} is missing")
            return None
        return cell if feature["dtype"] == "category" else float(cell)

    for i in range(count):
        line = table[i * (len(table) - 1) // (count - 1)]
        try:
            rows.append([value(feature, line[feature["name"]]) for feature in features])
        except ValueError:
            continue  # the example and the other rows suffice
    return rows, f"the manifest's example row and {len(rows) - 1} rows of {found[0]}"


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
            rows, rows_from = smoke_rows(Manifest.load(model_dir).raw)
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
        container.stop(timeout=Settings().stop_timeout)
        container.reload()
        code = container.attrs["State"]["ExitCode"]
        if code != 0:
            raise ImageError(f"the container exited with code {code} on SIGTERM:\n"
                             + container.logs(tail=20).decode(errors="replace"))
        return {"port": port, "ready_after_s": round(ready_after, 2), "uid": uid,
                "rows_from": rows_from, "predictions": got, "max_difference": worst}
    finally:
        container.remove(force=True)
