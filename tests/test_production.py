"""`make champion`: which image the gate must beat. Only "no such tag or package" means none;
any other failure stops the job with the reason."""
from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from deploy import production
from deploy.registry import Registry, RegistryError
from deploy.settings import Settings

LOCAL_REGISTRY = "127.0.0.1:5000"


def test_a_repository_without_production_has_no_champion():
    """The real local registry: a repository nobody pushed to answers "name unknown"."""
    settings = Settings(registry=LOCAL_REGISTRY, image=f"nothing-here-{uuid.uuid4().hex[:8]}")
    assert production.champion(settings, Registry(LOCAL_REGISTRY, timeout=30)) is None


def test_an_unreachable_registry_is_an_error_not_an_absent_champion():
    settings = Settings(registry="127.0.0.1:9", image="model-service")
    with pytest.raises(RegistryError, match="cannot read model-service:production"):
        production.champion(settings, Registry("127.0.0.1:9", timeout=30))


class DeniedRegistry:
    """ghcr.io's answer for a package that does not exist, or a token without access (ghcr.io
    cannot be reached from the tests: this one answer is stubbed)."""

    def digest(self, repository, reference):
        raise RegistryError(f"registry ghcr.io: cannot read {repository}:{reference}: "
                            "requested access to the resource is denied")


@pytest.fixture
def github_api():
    """A stand-in for GitHub's packages API (api.github.com cannot be reached from the tests):
    it answers with the status set in `answers` per path kind, and records the requests."""
    answers, seen = {"users": 404, "orgs": 404}, []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            status = answers[self.path.split("/")[1]]
            body = json.dumps({"message": "Not Found"} if status == 404 else {}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    environ = {"GITHUB_API_URL": f"http://127.0.0.1:{server.server_port}",
               "GITHUB_TOKEN": "token-1"}
    yield answers, seen, environ
    server.shutdown()


def test_ghcr_denied_for_a_package_that_does_not_exist_is_no_champion(github_api):
    answers, seen, environ = github_api
    settings = Settings(registry="ghcr.io", image="someone/new-repo")
    assert production.champion(settings, DeniedRegistry(), environ) is None
    assert seen == [("/users/someone/packages/container/new-repo", "Bearer token-1"),
                    ("/orgs/someone/packages/container/new-repo", "Bearer token-1")]


@pytest.mark.parametrize("kind", ["users", "orgs"])
def test_ghcr_denied_for_a_package_that_exists_stops_the_gate(github_api, kind):
    answers, seen, environ = github_api
    answers[kind] = 200
    settings = Settings(registry="ghcr.io", image="someone/repo")
    with pytest.raises(RegistryError, match="denied"):
        production.champion(settings, DeniedRegistry(), environ)


def test_ghcr_denied_without_a_token_to_ask_github_stops_the_gate(github_api):
    _, seen, environ = github_api
    settings = Settings(registry="ghcr.io", image="someone/repo")
    with pytest.raises(RegistryError, match="denied"):
        production.champion(settings, DeniedRegistry(),
                            {"GITHUB_API_URL": environ["GITHUB_API_URL"]})
    assert seen == []
