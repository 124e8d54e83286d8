"""Deploy and rollback against a registry like ghcr.io: it wants a login (htpasswd; the tools
take it from `docker login`), its tag list comes in pages of 100 in lexical order, and its
history holds release candidates and more than 100 development builds.

The registry is the real CNCF registry with htpasswd auth. Paging is the one ghcr behaviour
it lacks (it pages only when asked with n=, and skopeo does not ask), so a small proxy in
front of it pages as ghcr does and leaves the Docker-Content-Digest header out of manifest
answers (which the tools must not need); everything else passes through untouched.
"""
from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from release_tools import deployed, make, ok, remove_images, unavailable
from deploy.docker_driver import VERSION_LABEL
from deploy.registry import PRODUCTION_TAG, Registry, RegistryError
from deploy.smoke import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

USER, PASSWORD = "deployer", "s3cret-for-tests"
PAGE = 100
DEV_TAGS = [f"0.0.0-dev.g{i:07x}" for i in range(110)]


class GhcrLikeProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the registry; tag lists in pages of 100 with a Link header, as ghcr."""
    upstream: tuple[str, int]
    protocol_version = "HTTP/1.1"

    def body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # docker push
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def forward(self):
        body = self.body()
        path = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(path.query)
        paging = path.path.endswith("/tags/list") and self.command == "GET"
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        connection.putrequest(self.command, path.path if paging else self.path,
                              skip_host=True, skip_accept_encoding=True)
        for key, value in self.headers.items():  # all of them: Accept comes several times
            if key.lower() not in ("content-length", "transfer-encoding"):
                connection.putheader(key, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        data = answer.read()
        dropped = {"content-length", "transfer-encoding", "connection"}
        if "/manifests/" in path.path and self.command in ("GET", "HEAD"):
            dropped.add("docker-content-digest")
        out_headers = [(k, v) for k, v in answer.getheaders() if k.lower() not in dropped]
        if paging and answer.status == 200:
            listing = json.loads(data)
            tags = sorted(listing.get("tags") or [])
            if "last" in query:
                tags = [t for t in tags if t > query["last"][0]]
            size = int(query.get("n", [PAGE])[0])
            if len(tags) > size:
                tags = tags[:size]
                out_headers.append(("Link", f'<{path.path}?last={tags[-1]}&n={size}>; '
                                            'rel="next"'))
            data = json.dumps({"name": listing["name"], "tags": tags}).encode()
        self.send_response(answer.status)
        for key, value in out_headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        connection.close()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward

    def log_message(self, *args):
        pass


def start_registry(engine, tmp: Path, port: int):
    """The CNCF registry with htpasswd auth on 127.0.0.1:port: Debian's docker-registry when
    installed, else the registry:2 image (as GitHub users run it); returns a stop function."""
    import bcrypt
    (tmp / "htpasswd").write_text(
        f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n")
    settings = {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}", "REGISTRY_AUTH": "htpasswd",
                "REGISTRY_AUTH_HTPASSWD_REALM": "tests",
                "REGISTRY_STORAGE_DELETE_ENABLED": "true"}
    if shutil.which("docker-registry"):
        (tmp / "config.yml").write_text(
            "version: 0.1\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {tmp / 'data'}\n")
        process = subprocess.Popen(
            ["docker-registry", "serve", str(tmp / "config.yml")],
            env={**os.environ, **settings, "REGISTRY_AUTH_HTPASSWD_PATH": str(tmp / "htpasswd")},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = process.kill
    else:
        container = engine.containers.run(
            "registry:2", detach=True, network_mode="host", remove=True,
            environment={**settings, "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd"},
            volumes={str(tmp): {"bind": "/auth", "mode": "ro"}})
        stop = container.kill
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                return stop
        except requests.RequestException:
            pass
        time.sleep(0.1)
    stop()
    unavailable(f"the registry with htpasswd auth did not start on port {port}")


@pytest.fixture(scope="module")
def ghcr_like(engine, tmp_path_factory):
    """(the proxy's host:port, a DOCKER_CONFIG directory that `docker login` logged in to it)"""
    tmp = tmp_path_factory.mktemp("auth-registry")
    upstream = free_port()
    stop = start_registry(engine, tmp, upstream)
    handler = type("Proxy", (GhcrLikeProxy,), {"upstream": ("127.0.0.1", upstream)})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{proxy.server_address[1]}"
    config = tmp / "docker-config"
    config.mkdir()
    try:
        ok(subprocess.run([os.environ.get("DOCKER") or "docker", "--config", str(config),
                           "login", host, "--username", USER, "--password-stdin"],
                          input=PASSWORD, capture_output=True, text=True))
        yield host, config
    finally:
        proxy.shutdown()
        stop()


@pytest.fixture
def ghcr_env(engine, images, release_env, ghcr_like, monkeypatch):
    """The Makefile's variables for a service of its own whose registry is the proxy."""
    host, config = ghcr_like
    env = {**release_env, "IMAGE": release_env["IMAGE"] + "-ghcr", "REGISTRY": host,
           "PORT": str(free_port()), "DOCKER_CONFIG": str(config)}
    engine.images.get(images["1.0.0"]).tag(env["IMAGE"], "1.0.0")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))  # for the Registry used here
    yield env
    for container in deployed(engine, env, all=True):
        container.remove(force=True)
    remove_images(engine, env["IMAGE"])


def serving(engine, env) -> str:
    (container,) = deployed(engine, env)
    return container.labels[VERSION_LABEL]


def test_rollback_through_a_login_with_pages_of_tags_and_pre_releases(engine, ghcr_env):
    env, repository = ghcr_env, ghcr_env["IMAGE"]
    host = env["REGISTRY"]
    ok(make("push", env, VERSION="1.0.0"))  # the engine pushes with the `docker login`
    registry = Registry(host)
    digest, raw = registry.manifest(repository, "1.0.0")
    for tag in ("1.1.0-rc.1", "1.1.0", "1.2.0"):
        registry.tag(repository, digest, tag)
    for tag in DEV_TAGS:  # 110 development builds, which sort before every release
        requests.put(f"http://{host}/v2/{repository}/manifests/{tag}", data=raw,
                     auth=(USER, PASSWORD), timeout=10,
                     headers={"Content-Type": json.loads(raw)["mediaType"]}).raise_for_status()
    first_page = requests.get(f"http://{host}/v2/{repository}/tags/list", timeout=10,
                              auth=(USER, PASSWORD))
    assert len(first_page.json()["tags"]) == PAGE and "1.0.0" not in first_page.text
    tags = registry.tags(repository)  # every page
    assert {"1.0.0", "1.1.0-rc.1", "1.1.0", "1.2.0", *DEV_TAGS} <= set(tags)

    for version in ("1.0.0", "1.1.0-rc.1", "1.1.0"):
        ok(make("deploy", env, VERSION=version))
    assert serving(engine, env) == "1.1.0"
    # back to the stable release that served before, not to the release candidate
    assert "rollback: " in ok(make("rollback", env))
    assert serving(engine, env) == "1.0.0"
    assert registry.digest(repository, PRODUCTION_TAG) == digest
    # a release on the second page of tags is found
    ok(make("rollback", env, VERSION="1.2.0"))
    assert serving(engine, env) == "1.2.0"

    # without the login: a clear refusal, and the deployed release keeps serving
    anonymous = {**env, "DOCKER_CONFIG": tempfile.mkdtemp()}
    refused = make("rollback", anonymous, VERSION="1.1.0")
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "authentication required" in refused.stderr and "Traceback" not in refused.stderr
    assert serving(engine, env) == "1.2.0"
    shutil.rmtree(anonymous["DOCKER_CONFIG"])


def test_a_registry_error_is_no_missing_tag(ghcr_like, monkeypatch):
    """A refused login is an error that says so; only a missing tag reads as absent."""
    host, _ = ghcr_like
    monkeypatch.setenv("DOCKER_CONFIG", tempfile.mkdtemp())
    with pytest.raises(RegistryError, match="authentication required"):
        Registry(host).digest("team/model", "production")
    with pytest.raises(RegistryError, match="connection refused"):
        Registry(f"127.0.0.1:{free_port()}").digest("team/model", "production")


def test_credentials_come_from_a_docker_credential_helper(ghcr_like, tmp_path, monkeypatch):
    """`credsStore` (Docker Desktop's keychain, `pass`, ...): a helper program answers `get`
    with the login. skopeo alone does not read credsStore; the Docker SDK does."""
    host, _ = ghcr_like
    helper = tmp_path / "bin" / "docker-credential-testsecrets"
    helper.parent.mkdir()
    helper.write_text("#!/bin/sh\nread -r server\n"
                      f"[ \"$1\" = get ] && printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\","
                      f"\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n")
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "testsecrets"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    assert Registry(host).tags("no/such-repository") == []  # answered, not refused
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RegistryError, match="authentication required"):
        Registry(host).tags("no/such-repository")
