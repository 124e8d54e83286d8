"""The release tooling's logic that needs no Docker engine: versions, rollback targets, build
arguments and labels, the health probe, the command line's errors."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from service import healthcheck
from deploy.__main__ import main
from deploy.docker_driver import (HOST_FACTS, DeployError, Deployment, host_of,
                                  migrate_warning)
from deploy.image import (ImageError, build_command, check_version, is_development,
                          model_labels)
from deploy.registry import is_loopback, release_versions
from deploy.releases import history_after, rollback_target
from deploy.settings import Settings
from deploy.smoke import smoke_rows

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {"features": [
    {"name": "age", "dtype": "int", "minimum": 18, "maximum": 90, "description": ""},
    {"name": "ratio", "dtype": "float", "minimum": 0.0, "maximum": 1.0, "description": ""},
    {"name": "score", "dtype": "float", "minimum": None, "maximum": None, "description": ""},
], "target": "y", "labels": ["no", "yes"], "positive_label": "yes"}


def write_model_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.tflite").write_bytes(b"model")
    (directory / "manifest.json").write_text(json.dumps({
        "version": "1767225600", "files": {"model.tflite": {"sha256": "ab" * 32}},
        "schema": SCHEMA,
        "model": {"architecture": "mlp", "threshold": 0.5, "primary_metric": "roc_auc",
                  "primary_metric_value": 0.91}}))
    return directory


def test_release_versions_are_semantic_versions_in_order():
    tags = ["production", "sha-1a2b3c4", "1.10.0", "1.9.0", "latest", "1.10.0-rc.1", "0.1.0"]
    assert release_versions(tags) == ["0.1.0", "1.9.0", "1.10.0-rc.1", "1.10.0"]


def serving(version: str, *history: str) -> Deployment:
    return Deployment("svc", version, f"registry/svc@sha256:{version}", "c", "url", history)


RELEASES = ["0.0.0-dev.g0123456", "0.1.0", "0.2.0-rc.1", "0.2.0", "1.0.0-rc.1", "1.0.0",
            "1.9.0", "1.10.0", "1.10.1-dev.1"]


@pytest.mark.parametrize("current, wanted, expected", [
    # the history says what served before: stable releases only, walking back
    (serving("1.0.0", "0.1.0", "1.0.0-rc.1"), None, ("0.1.0", ())),
    (serving("0.2.0", "0.0.0-dev.g0123456", "0.1.0", "0.2.0-rc.1"), None,
     ("0.1.0", ("0.0.0-dev.g0123456",))),
    # 0.1.0, then 1.9.0, then 1.10.0: back to 1.9.0, and a second rollback goes further
    # back to 0.1.0, not forth again to 1.10.0
    (serving("1.10.0", "0.1.0", "1.9.0"), None, ("1.9.0", ("0.1.0",))),
    (serving("1.9.0", "0.1.0"), None, ("0.1.0", ())),
    # a redeploy of the current version is no step back
    (serving("1.9.0", "0.2.0", "1.9.0"), None, ("0.2.0", ())),
    # no history: the stable release before it in semver order (not string order)
    (serving("1.10.0"), None, ("1.9.0", ())),
    (serving("2.0.0"), None, ("1.10.0", ())),  # the deployed one may be gone from the registry
    # a named version, pre-releases too; the history grows by the current one
    (serving("1.10.0", "1.9.0"), "0.2.0-rc.1", ("0.2.0-rc.1", ("1.9.0", "1.10.0"))),
    (None, "0.1.0", ("0.1.0", ())),
])
def test_rollback_target(current, wanted, expected):
    assert rollback_target(RELEASES, current, wanted) == expected


@pytest.mark.parametrize("current, wanted, message", [
    (serving("1.9.0"), "3.0.0", r"unknown version 3.0.0; releases: 0.1.0, 0.2.0, 1.0.0, "
                                r"1.9.0, 1.10.0 \(and 4 pre-releases or development builds\)"),
    (serving("0.1.0"), None, "no stable release before 0.1.0"),
    (serving("0.1.0", "0.0.0-dev.g0123456"), None,
     "no stable release served before 0.1.0 here .it followed 0.0.0-dev.g0123456"),
    (serving("1.0.0", "1.0.0-rc.1"), None, "no stable release served before 1.0.0 here"),
    (None, None, "nothing is deployed"),
])
def test_rollback_target_refusals_name_the_releases(current, wanted, message):
    with pytest.raises(DeployError, match=message):
        rollback_target(RELEASES, current, wanted)


def test_a_deployment_remembers_a_bounded_history():
    assert history_after(None) == ()
    assert history_after(serving("1.0.0", "0.1.0")) == ("0.1.0", "1.0.0")
    long = serving("9.0.0", *(f"1.{i}.0" for i in range(30)))
    assert history_after(long)[-1] == "9.0.0" and len(history_after(long)) == 20


@pytest.mark.parametrize("version", ["1.2.0", "0.0.0-dev.g1a2b3c4", "2.0.0-rc.1"])
def test_release_versions_accepted(version):
    assert check_version(version) == version


@pytest.mark.parametrize("version", ["v1.2.0", "1.2", "latest", "1.2.0+build.5", ""])
def test_other_versions_refused(version):
    with pytest.raises(ImageError, match="not a semantic version"):
        check_version(version)


@pytest.mark.parametrize("version, development", [
    ("0.0.0-dev.g1a2b3c4", True), ("1.3.0-dev.2", True), ("1.3.0-rc.1", False), ("1.3.0", False),
])
def test_only_development_builds_may_be_pushed_again(version, development):
    assert is_development(version) is development


def test_model_labels_come_from_the_manifest(tmp_path):
    assert model_labels(write_model_dir(tmp_path)) == {
        "MODEL_VERSION": "1767225600", "MODEL_SHA256": "ab" * 32,
        "PRIMARY_METRIC": "roc_auc", "PRIMARY_METRIC_VALUE": "0.91"}


def test_model_labels_need_a_trained_model(tmp_path):
    with pytest.raises(ImageError, match="lacks model.tflite, manifest.json: run `make train`"):
        model_labels(tmp_path)
    write_model_dir(tmp_path)
    (tmp_path / "manifest.json").write_text('{"version": "1"}')
    with pytest.raises(ImageError, match="manifest.json: not a training manifest"):
        model_labels(tmp_path)


def test_build_command(tmp_path, monkeypatch):
    ca_bundle = tmp_path / "ca.pem"
    ca_bundle.write_text("certificates")
    monkeypatch.setenv("PIP_CERT", str(ca_bundle))
    model_dir = write_model_dir(tmp_path / "context" / "artifacts")
    settings = Settings(image="svc", version="1.2.0", model_dir=str(model_dir),
                        base_image="base:1", docker_cli="/usr/bin/docker")
    command, tags = build_command(settings, tmp_path / "context")
    assert command[:4] == ["/usr/bin/docker", "build", "--network", "host"]
    assert command[-1] == str((tmp_path / "context").resolve())
    assert f"id=pip_cert,src={ca_bundle}" in command
    args = [command[i + 1] for i, word in enumerate(command) if word == "--build-arg"]
    for expected in ("BASE_IMAGE=base:1", "MODEL_DIR=artifacts", "VERSION=1.2.0",
                     "MODEL_SHA256=" + "ab" * 32, "PRIMARY_METRIC=roc_auc"):
        assert expected in args
    assert tags[0] == "svc:1.2.0"
    assert tags[1].startswith("svc:sha-") and tags[1] in command


def test_build_refuses_a_model_outside_the_context(tmp_path):
    settings = Settings(version="1.0.0", model_dir=str(write_model_dir(tmp_path / "model")))
    with pytest.raises(ImageError, match="must be inside the build context"):
        build_command(settings, tmp_path / "context")


def test_settings_from_the_make_variables():
    settings = Settings.from_env({"IMAGE": "team/model-service", "PORT": "9000",
                                  "REGISTRY": "registry.example:443", "VERSION": ""})
    assert settings.port == 9000 and settings.version == Settings.version
    assert settings.remote == "registry.example:443/team/model-service"
    assert settings.service == "team-model-service"


@pytest.mark.parametrize("docker_host, expected", [
    (None, "127.0.0.1"), ("unix:///var/run/docker.sock", "127.0.0.1"),
    ("ssh://deploy@prod.example.org", "prod.example.org"), ("tcp://10.1.2.3:2376", "10.1.2.3"),
])
def test_service_url_host_follows_docker_host(docker_host, expected):
    assert host_of(docker_host) == expected


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1:5000", True), ("localhost:5000", True), ("[::1]:5000", True),
    ("ghcr.io", False), ("registry.example:5000", False),
])
def test_loopback_registries_speak_plain_http(host, loopback):
    assert is_loopback(host) is loopback


def test_smoke_rows_are_the_example_and_real_rows(tmp_path):
    manifest = {"schema": SCHEMA, "example": {"age": 40, "ratio": 0.25, "score": -3.5}}
    assert smoke_rows(manifest, tmp_path) == ([[40.0, 0.25, -3.5]],
                                              "the manifest's example row")
    data = tmp_path / "people.csv"
    data.write_text("y,score,ratio,age\n" + "".join(
        f"no,{i},0.{i},{20 + i}\n" for i in range(9)) + "yes,,0.9,29\n")
    rows, source = smoke_rows(manifest, tmp_path)
    # spread over the file, in schema order; the row with a missing value is left out
    assert rows == [[40.0, 0.25, -3.5], [20.0, 0.0, 0.0], [23.0, 0.3, 3.0], [26.0, 0.6, 6.0]]
    assert source == f"the manifest's example row and 3 rows of {data}"
    data.write_text("other,columns\n1,2\n")
    assert smoke_rows(manifest, tmp_path)[1] == \
        f"the manifest's example row ({data} has other features)"


@pytest.mark.parametrize("path, expected", [
    ("/proc/sys/net/ipv4/tcp_migrate_req", None), ("/nonexistent/tcp_migrate_req", "missing"),
])
def test_host_facts_survive_a_kernel_without_tcp_migrate_req(path, expected):
    """The deploy runs HOST_FACTS in a container on the engine's host; here it runs locally."""
    if expected is None and not os.path.exists(path):
        pytest.skip(f"{path}: this kernel lacks it")
    port, migrate = subprocess.run([sys.executable, "-c", HOST_FACTS, path], check=True,
                                   capture_output=True, text=True).stdout.split()
    assert int(port) > 0
    assert migrate == (expected or Path(path).read_text().strip())
    if migrate != "1":
        assert "warning: net.ipv4.tcp_migrate_req " in migrate_warning(migrate)
    if expected == "missing":
        assert "does not exist (a kernel before 5.14)" in migrate_warning(migrate)


def test_the_engine_stops_a_container_after_gunicorn_gave_up():
    settings = Settings.from_env({"GRACEFUL_TIMEOUT": "45"})
    assert settings.graceful_timeout == 45 and settings.stop_timeout >= 45 + 5
    assert Settings().stop_timeout > Settings().graceful_timeout


def short_sha_commit(repo: Path, pattern: str) -> str:
    """Commit to `repo` until the commit's 7-character short SHA matches `pattern`."""
    empty_tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    person = "Test <test@example.org> 1767225600 +0000"
    for attempt in range(100_000):
        body = (f"tree {empty_tree}\nauthor {person}\ncommitter {person}\n\n"
                f"attempt {attempt}\n").encode()
        sha = hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()
        if re.fullmatch(pattern, sha[:7]):
            written = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"],
                                     cwd=repo, input=body, capture_output=True, check=True)
            assert written.stdout.decode().strip() == sha
            subprocess.run(["git", "update-ref", "HEAD", sha], cwd=repo, check=True)
            return sha
    raise AssertionError(f"no commit matching {pattern}")


def test_a_development_version_is_semver_for_a_commit_of_digits_with_a_leading_0(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    sha = short_sha_commit(tmp_path, r"0[0-9]{6}")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VERSION", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")}
    version = subprocess.run(
        ["make", "-s", "-f", str(REPO / "Makefile"), "--eval", "version: ; @echo $(VERSION)",
         "version"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version == f"0.0.0-dev.g{sha[:7]}"
    assert check_version(version) == version and is_development(version)


@pytest.fixture
def readyz_server():
    """A real HTTP server whose /readyz answers with `status["code"]`."""
    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status["code"] if self.path == "/readyz" else 404)
            self.end_headers()
            self.wfile.write(b"ready" if status["code"] == 200 else b"loading")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], status
    server.shutdown()
    server.server_close()


def test_healthcheck_asks_the_private_port_first(readyz_server):
    port, status = readyz_server
    assert healthcheck.ready({"PORT": "1", "HEALTH_PORT": str(port)}) == \
        (True, f"/readyz on port {port}: 200 ready")
    status["code"] = 503
    assert healthcheck.ready({"PORT": str(port)}) == \
        (False, f"/readyz on port {port}: 503 loading")
    server_gone, seen = healthcheck.ready({"PORT": "1"})
    assert not server_gone and "on port 1:" in seen


def test_cli_refuses_an_unknown_deploy_target(monkeypatch, capsys):
    monkeypatch.setenv("DEPLOY_TARGET", "nomad")
    assert main(["rollback", "--version", "1.0.0"]) == 1
    assert "unknown DEPLOY_TARGET 'nomad'; known: docker" in capsys.readouterr().err


def test_cli_refuses_a_version_that_is_no_release(monkeypatch, capsys):
    monkeypatch.setenv("VERSION", "latest")
    assert main(["push"]) == 1
    assert "VERSION 'latest' is not a semantic version" in capsys.readouterr().err


def test_cli_says_which_engine_does_not_answer(monkeypatch, capsys):
    from deploy.smoke import free_port
    monkeypatch.setenv("DOCKER_HOST", f"ssh://deploy@127.0.0.1:{free_port()}")
    assert main(["status"]) == 1
    assert "no Docker engine answers at ssh://deploy@127.0.0.1:" in capsys.readouterr().err
