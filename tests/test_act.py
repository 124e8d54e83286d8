"""The workflows' jobs that need no GitHub, run for real by nektos/act (`.venv/bin/act`).

`-P ubuntu-latest=-self-hosted` runs each `run:` step on this machine, with the runner's
files (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) and commands (::error::, ::notice::) handled as
GitHub handles them; act's JSON log says what each step did. Offline, a job with a `uses:`
action other than checkout fails while act clones the action, so these are the jobs made of
`run:` steps only: release.yml's tag check, and the deploy-target gate of deploy.yml as
rollback.yml calls it (which must keep a fresh copy of the template green).
Skips only when no Docker engine is reachable and CI is not set.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker]

REPO = Path(__file__).resolve().parents[1]
ACT = REPO / ".venv" / "bin" / "act"


@pytest.fixture(scope="module")
def act(tmp_path_factory):
    import docker
    try:
        docker.from_env().ping()
    except Exception as error:  # any failure to connect means "no engine here"
        reason = f"no Docker engine reachable for act ({type(error).__name__}: {error})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
        pytest.skip(reason)
    empty = tmp_path_factory.mktemp("act") / "empty"
    empty.write_text("")

    def run(event: str, workflow: str, payload: dict, *args: str) -> tuple[int, list[dict]]:
        """act's exit status and log lines (JSON) for one event on one workflow."""
        event_file = empty.parent / "event.json"
        event_file.write_text(json.dumps(payload))
        # Only what the test gives: no .vars, .secrets or .input of the checkout.
        result = subprocess.run(
            [ACT, event, "--workflows", f".github/workflows/{workflow}",
             "--platform", "ubuntu-latest=-self-hosted", "--eventpath", event_file, "--json",
             "--var-file", empty, "--secret-file", empty, "--input-file", empty,
             "--env-file", empty, *args],
            cwd=REPO, capture_output=True, text=True, timeout=300,
            # act keeps each run's files (summary, outputs) under its cache directory.
            env={**os.environ, "XDG_CACHE_HOME": str(empty.parent / "cache")})
        lines = [json.loads(line) for line in result.stdout.splitlines() + result.stderr
                 .splitlines() if line.startswith("{")]
        return result.returncode, lines
    return run


def results(lines: list[dict]) -> dict[tuple[str, str], str]:
    """{(job id, step name): result} of every step act ran (set up and complete included)."""
    return {(line["jobID"], line["step"]): line["stepResult"]
            for line in lines if "stepResult" in line}


def outputs(lines: list[dict]) -> dict[str, str]:
    return {line["name"]: line["arg"] for line in lines if line.get("command") == "set-output"}


def summary(lines: list[dict]) -> str:
    """What the steps wrote to the job summary (a file, so act reads all of it; a failing
    step's last lines on stdout may be lost)."""
    return "".join(line["content"] for line in lines if line.get("command") == "summary")


def log(lines: list[dict]) -> str:
    return "\n".join(line["msg"] for line in lines)


def jobs(lines: list[dict]) -> dict[str, str]:
    return {line["jobID"]: line["jobResult"] for line in lines if "jobResult" in line}


TAG_STEP = ("version", "the tag is vX.Y.Z or vX.Y.Z-prerelease")


@pytest.mark.parametrize("tag, version", [("v1.2.3", "1.2.3"), ("v0.10.0-rc.1", "0.10.0-rc.1")])
def test_release_accepts_a_semantic_version_tag(act, tag, version):
    status, lines = act("push", "release.yml", {"ref": f"refs/tags/{tag}"}, "--job", "version")
    assert status == 0, log(lines)
    assert results(lines)[TAG_STEP] == "success"
    assert outputs(lines) == {"version": version}
    assert summary(lines) == f"Release {version}\n"
    assert jobs(lines) == {"version": "success"}


@pytest.mark.parametrize("tag", ["v1.2", "v01.2.3", "v1.2.3+build.5", "v1.2.3-", "release-1"])
def test_release_refuses_a_tag_that_is_not_semantic_versioning(act, tag):
    status, lines = act("push", "release.yml", {"ref": f"refs/tags/{tag}"}, "--job", "version")
    assert status != 0
    assert results(lines)[TAG_STEP] == "failure"
    assert summary(lines).startswith(f"Refused: {tag} is not vX.Y.Z or vX.Y.Z-prerelease")
    assert outputs(lines) == {}


def dispatch(act, version: str, *args: str, ref: str = "refs/tags/v1.3.0"):
    """Run workflow, from a release tag unless `ref` says otherwise (README step 6)."""
    return act("workflow_dispatch", "rollback.yml", {"ref": ref, "inputs": {"version": version}},
               *args)


TARGET_STEP = ("target", "is a deploy target configured?")


def test_rollback_without_a_deploy_target_is_skipped_with_a_notice(act):
    status, lines = dispatch(act, "")
    assert status == 0, log(lines)
    assert results(lines)[TARGET_STEP] == "success"
    assert outputs(lines) == {"configured": "false"}
    assert summary(lines).startswith("### rollback skipped")
    assert "Set the repository variable DEPLOY_TARGET" in summary(lines)
    # The job that deploys never starts: a fresh copy of the template is green.
    assert jobs(lines) == {"target": "success"}


def test_rollback_refuses_a_version_that_is_no_version(act):
    status, lines = dispatch(act, "1.0.0'; touch pwned; '")
    assert status != 0
    assert results(lines)[TARGET_STEP] == "failure"
    assert summary(lines) == "rollback refused: '1.0.0'; touch pwned; '' is not a version (x.y.z)\n"
    assert jobs(lines) == {"target": "failure"}
    assert not (REPO / "pwned").exists()


def test_a_rollback_from_a_branch_is_refused_with_the_way_to_run_it(act):
    """README step 5 limits the production environment to tags v*.*.*: GitHub would refuse the
    deploy job of a run dispatched from the default branch. The gate says what to do instead."""
    status, lines = dispatch(act, "1.2.0", "--var", "DEPLOY_TARGET=docker", ref="refs/heads/main")
    assert status != 0
    assert results(lines)[TARGET_STEP] == "failure"
    assert summary(lines) == (
        "rollback refused: production deploys from release tags only, and this run is on "
        "refs/heads/main: run the workflow from a tag (Run workflow > Use workflow from > Tags > "
        "the latest vX.Y.Z, or gh workflow run rollback.yml --ref vX.Y.Z)\n")
    assert jobs(lines) == {"target": "failure"}


def test_with_a_deploy_target_the_rollback_job_starts_after_the_gate(act):
    status, lines = dispatch(act, "1.2.0", "--var", "DEPLOY_TARGET=docker")
    assert results(lines)[TARGET_STEP] == "success"
    assert outputs(lines)["configured"] == "true"
    # Offline, act cannot clone the job's actions from GitHub, so the job stops at its set-up;
    # with the internet it would stop at the missing DOCKER_HOST. Either way it started.
    assert ("deploy", "Set up job") in results(lines)
    assert status != 0


# --- Whole jobs, as on a fresh runner -------------------------------------------------------
# The real workflow files run job by job in a clone of this checkout (uncommitted changes
# included), with the actions they pin: from a local copy of each pinned action when there is
# one (ACT_OFFLINE_ACTIONS, else ../shared/actions beside this checkout: a folder with
# act-offline and <owner>/<repo>/<sha>/ copies), else fetched by act from GitHub as usual.
# Each job starts without .venv or artifacts, installs what it needs as on GitHub, and talks
# to the real Docker engine and registry. The repository
# variable REGISTRY points the jobs at the registry on 127.0.0.1:5000 instead of ghcr.io, so the
# real docker/login-action logs in there and the pushes are real. What stays stubbed, because it
# needs the GitHub API: `gh` (a script first on PATH that records its arguments).
OFFLINE_ACTIONS = [Path(os.environ["ACT_OFFLINE_ACTIONS"])] if os.environ.get(
    "ACT_OFFLINE_ACTIONS") else [REPO.parent / "shared" / "actions"]
LOCAL_REGISTRY = os.environ.get("ACT_REGISTRY", "127.0.0.1:5000")
GH_STUB = """#!/usr/bin/env bash
# gh, stubbed: the GitHub API is out of reach. Records each call; answers nothing.
printf '%s\\n' "$*" >> "$GH_CALLS"
"""


@dataclass
class Run:
    status: int
    lines: list[dict]
    artifacts: Path
    seconds: float

    def artifact(self, name: str) -> zipfile.ZipFile:
        """An uploaded artifact (act's server keeps each as <run>/<name>/<name>.zip)."""
        return zipfile.ZipFile(next((self.artifacts / "1" / name).glob("*.zip")))


class Workspace:
    """A clone of this checkout whose origin is a GitHub repository of its own name."""

    def __init__(self, root: Path):
        self.root = root
        self.repo = root / "repo"
        self.name = f"example/act-{uuid.uuid4().hex[:8]}"
        subprocess.run(["git", "clone", "-q", str(REPO), str(self.repo)], check=True)
        listed = subprocess.run(["git", "ls-files", "-coz", "--exclude-standard"], cwd=REPO,
                                check=True, capture_output=True).stdout.decode().split("\0")
        for name in filter(None, listed):
            if (REPO / name).is_file():
                (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, self.repo / name)
        subprocess.run(["git", "remote", "set-url", "origin",
                        f"https://github.com/{self.name}.git"], cwd=self.repo, check=True)
        self.commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.repo, check=True,
                                     capture_output=True, text=True).stdout.strip()
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "gh").write_text(GH_STUB)
        (self.bin / "gh").chmod(0o755)
        self.gh_calls = root / "gh-calls"
        self.empty = root / "empty"
        self.empty.write_text("")
        self.runs = 0

    def event(self, **fields) -> dict:
        return {"repository": {"full_name": self.name, "default_branch": "main",
                               "private": False}, **fields}

    def act(self, event: str, workflow: str, payload: dict, *args: str,
            timeout: float = 1200) -> Run:
        self.runs += 1
        run_dir = self.root / f"run-{self.runs}"
        run_dir.mkdir()
        (run_dir / "event.json").write_text(json.dumps(payload))
        offline = [path / "act-offline" for path in OFFLINE_ACTIONS
                   if (path / "act-offline").exists()]
        command = [*offline[:1]] or [str(ACT), "-P", "ubuntu-latest=-self-hosted"]
        env = {**os.environ, "ACT": str(ACT), "ACT_CACHE_DIR": str(run_dir / "act"),
               "ACT_ARTIFACT_DIR": str(run_dir / "artifacts"), "GH_CALLS": str(self.gh_calls)}
        for name in ("VIRTUAL_ENV", "REGISTRY", "IMAGE", "VERSION", "MAKEFLAGS", "MAKELEVEL",
                     "PYTEST_ADDOPTS", "COV_CORE_SOURCE", "COV_CORE_CONFIG", "COV_CORE_DATAFILE"):
            env.pop(name, None)
        # This machine's own docker client and engine (local.env, from `make provision`), as a
        # runner has its own: act's copy of the checkout leaves the untracked file out. Only
        # the values set: act's --env beats a job's env, so an empty DOCKER_HOST would blank
        # the deploy job's DOCKER_HOST (vars.DOCKER_HOST), which GitHub would keep.
        machine = [f"--env={line}" for line in (REPO / "local.env").read_text().splitlines()
                   if line.partition("=")[2] and not line.startswith("#")] if (
            REPO / "local.env").exists() else []
        started = time.monotonic()
        result = subprocess.run(
            [*command, event, "--workflows", f".github/workflows/{workflow}",
             "--eventpath", str(run_dir / "event.json"), "--json", "--rm",
             "--artifact-server-path", str(run_dir / "artifacts"), "--defaultbranch", "main",
             "--var-file", str(self.empty), "--secret-file", str(self.empty),
             "--input-file", str(self.empty), "--env-file", str(self.empty),
             "--var", f"REGISTRY={LOCAL_REGISTRY}", "--secret", "GITHUB_TOKEN=act-token",
             "--env", f"PATH={self.bin}:{os.environ['PATH']}", *machine, *args],
            cwd=self.repo, capture_output=True, text=True, timeout=timeout, env=env)
        lines = [json.loads(line) for line in (result.stdout + result.stderr).splitlines()
                 if line.startswith("{")]
        return Run(result.returncode, lines, run_dir / "artifacts", time.monotonic() - started)


@pytest.fixture(scope="module")
def workspace(act, tmp_path_factory):
    import docker
    from deploy.registry import Registry
    space = Workspace(tmp_path_factory.mktemp("act-jobs"))
    yield space
    engine, registry = docker.from_env(), Registry(LOCAL_REGISTRY)
    for container in engine.containers.list(all=True, filters={"label": "ml.deploy.service"}):
        if space.name.replace("/", "-") in container.labels.get("ml.deploy.service", ""):
            container.remove(force=True)
    for digest in {registry.digest(space.name, tag) for tag in registry.tags(space.name)}:
        registry.delete(space.name, digest)
    for image in engine.images.list():
        if any(space.name in tag for tag in image.tags):
            engine.images.remove(image.id, force=True)


def actions_used(lines: list[dict]) -> str:
    """Fails when an action was fetched rather than taken from the local copies: a pin that
    changed (dependabot) needs a refreshed copy, never a skipped test."""
    text = log(lines)
    assert "not matched" not in text, [line for line in text.splitlines() if "not matched"
                                       in line]
    return text


def failed(run: Run) -> str:
    """The jobs' results and the last lines of the jobs that failed: what a failing assertion
    shows."""
    ran = jobs(run.lines)
    bad = {job for job, result in ran.items() if result == "failure"}
    tail = [line["msg"] for line in run.lines if line.get("jobID") in bad
            and not line["msg"].startswith(("deleted cache", "WARNING: Location"))]
    return f"{ran}\n" + "\n".join(tail[-60:])


def step_results(lines: list[dict], job: str) -> dict[str, str]:
    return {step: result for (job_id, step), result in results(lines).items() if job_id == job}


LOGIN = "docker/login-action@74a5d142397b4f367a81961eba4e8cd7edddf772"
ATTEST = "actions/attest-build-provenance@e8998f949152b193b063cb0ec769d69d929409be"
SBOM = "anchore/sbom-action@17ae1740179002c89186b61233e0f892c3118b11"
# anchore/sbom-action downloads syft from github.com: stubbed by a local action of the same
# pin that writes a minimal SPDX document and uploads it as the real one does.
SBOM_STUB = """name: sbom-action, stubbed (syft comes from github.com)
inputs:
  image: {required: true}
  format: {required: false}
  output-file: {required: true}
  artifact-name: {required: true}
runs:
  using: composite
  steps:
    - shell: bash
      env:
        IMAGE: ${{ inputs.image }}
        OUTPUT: ${{ inputs.output-file }}
      run: |
        printf '{"spdxVersion": "SPDX-2.3", "name": "%s"}\\n' "$IMAGE" > "$OUTPUT"
    - uses: actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02
      with:
        name: ${{ inputs.artifact-name }}
        path: ${{ inputs.output-file }}
"""


def pull_request(workspace: Workspace, head_repository: str) -> dict:
    return workspace.event(pull_request={
        "number": 7, "head": {"ref": "feature", "repo": {"full_name": head_repository}},
        "base": {"ref": "main", "repo": {"full_name": workspace.name}}})


def registry_tags(workspace: Workspace) -> dict[str, str]:
    from deploy.registry import Registry
    registry = Registry(LOCAL_REGISTRY)
    return {tag: registry.digest(workspace.name, tag) for tag in registry.tags(workspace.name)}


def deployed(workspace: Workspace) -> str:
    """What `make status` says about the workspace's service on the local engine."""
    return subprocess.run([sys.executable, "-m", "deploy", "status"], cwd=REPO, check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "IMAGE": workspace.name, "DEPLOY_TARGET": "docker",
                               "REGISTRY": LOCAL_REGISTRY}).stdout.strip()


@pytest.fixture(scope="module")
def pushed(workspace) -> Run:
    """ci.yml for a push to the default branch, every job up to publish. The test job runs the
    suite without its docker-marked tests (those are the tests running this very act run) and
    without the slow ones, which keeps it to minutes."""
    return workspace.act("push", "ci.yml", workspace.event(ref="refs/heads/main",
                                                           after=workspace.commit),
                         "-j", "publish", "--env", "PYTEST_ADDOPTS=-m 'not docker and not slow'")


@pytest.mark.timeout(1800)  # whole jobs, each installing as a fresh runner does
def test_a_push_to_main_runs_every_check_and_publishes_the_image(workspace, pushed):
    actions_used(pushed.lines)
    assert pushed.status == 0, failed(pushed)
    assert jobs(pushed.lines) == {job: "success" for job in
                                  ("lint", "test", "model", "image", "publish")}
    model = step_results(pushed.lines, "model")
    assert model[LOGIN] == "success" and model["make train"] == "success"
    # act reports no result for a skipped step.
    assert "make candidate" not in model, "only a tag looks for a published image"
    assert "model.tflite" in pushed.artifact("model").namelist()
    # Published to the registry: the development version and the commit's sha- tag, one digest.
    tags = registry_tags(workspace)
    sha = f"sha-{workspace.commit[:7]}"
    development = [tag for tag in tags if tag.startswith("0.0.0-dev")]
    assert len(development) == 1 and tags[development[0]] == tags[sha]
    assert f"Published `{LOCAL_REGISTRY}/{workspace.name}@{tags[sha]}`." in summary(pushed.lines)
    # Attesting needs GitHub's OIDC token and Sigstore: it fails here, as in a private
    # repository without GitHub Enterprise Cloud, and the publish stays green with a warning.
    publish = step_results(pushed.lines, "publish")
    assert publish["provenance in the job summary"] == "success"
    assert "The build provenance could not be attested" in summary(pushed.lines)


@pytest.mark.timeout(1800)  # whole jobs, each installing as a fresh runner does
def test_a_pull_request_from_the_repository_gets_its_report_as_one_comment(workspace):
    """ci.yml's model and report jobs on a same-repository pull request: the login, training,
    the gate, the report in the summary, the artifacts, the comment (gh, stubbed)."""
    run = workspace.act("pull_request", "ci.yml", pull_request(workspace, workspace.name),
                        "-j", "report")
    actions_used(run.lines)
    assert run.status == 0, failed(run)
    assert jobs(run.lines) == {"model": "success", "report": "success"}
    model = step_results(run.lines, "model")
    assert model[LOGIN] == "success" and model["make train"] == "success"
    assert "model.tflite" in run.artifact("model").namelist()
    assert run.artifact("report").namelist() == ["report.md"]
    calls = workspace.gh_calls.read_text().splitlines()
    assert calls[-1] == (f"api --method POST repos/{workspace.name}/issues/7/comments "
                         "-F body=@comment.md")


@pytest.mark.timeout(1800)  # whole jobs, each installing as a fresh runner does
def test_a_pull_request_from_a_fork_is_trained_and_gated_without_the_repository_token(
        workspace):
    """A fork's pull request gets no token that reads this repository's packages, nor one that
    may comment: no login (the gate reads production anonymously, or does without), no
    comment; the report stays in the job summary."""
    run = workspace.act("pull_request", "ci.yml", pull_request(workspace, "someone/fork"),
                        "-j", "report")
    actions_used(run.lines)
    assert run.status == 0, failed(run)
    assert jobs(run.lines).get("model") == "success"
    assert jobs(run.lines).get("report") in (None, "skipped")
    model = step_results(run.lines, "model")
    assert model.get(LOGIN, "skipped") == "skipped"
    assert model["make train"] == "success" and model["make evaluate"] == "success"
    assert "# " in summary(run.lines), "the evaluation report is in the job summary"


@pytest.fixture(scope="module")
def production(workspace, pushed):
    """Release 1.0.0 of the published image deployed by hand (the history a rollback needs),
    on a free port of this host; the engine's socket is the deploy target."""
    from deploy.smoke import free_port
    port = str(free_port())
    env = {**os.environ, "IMAGE": workspace.name, "REGISTRY": LOCAL_REGISTRY, "PORT": port,
           "DEPLOY_TARGET": "docker", "VERSION": "1.0.0"}
    for command in ("promote", "deploy"):
        done = subprocess.run([sys.executable, "-m", "deploy", command], cwd=workspace.repo,
                              env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    socket = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return ["--var", "DEPLOY_TARGET=docker", "--var", f"DOCKER_HOST={socket}",
            "--var", f"PORT={port}"]


@pytest.fixture(scope="module")
def released(workspace, production) -> Run:
    """release.yml for a tag v1.1.0 on the commit the push published."""
    subprocess.run(["git", "tag", "v1.1.0"], cwd=workspace.repo, check=True)
    stub = workspace.root / "sbom-action"
    stub.mkdir()
    (stub / "action.yml").write_text(SBOM_STUB)
    return workspace.act("push", "release.yml", workspace.event(ref="refs/tags/v1.1.0"),
                         *production, "--local-repository", f"{SBOM}={stub}")


@pytest.mark.timeout(1800)  # whole jobs, each installing as a fresh runner does
def test_a_tag_promotes_the_published_image_gates_it_and_deploys_it(workspace, pushed, released):
    actions_used(released.lines)
    assert released.status == 0, failed(released)
    ran = jobs(released.lines)
    assert {job: ran.get(job) for job in ("version", "candidate", "model", "publish", "target",
                                          "deploy", "github-release")} == dict.fromkeys(
        ("version", "candidate", "model", "publish", "target", "deploy", "github-release"),
        "success")
    # Build once: no lint, tests, training or build again for a commit the default branch
    # published; the model job gates the published image's model against production.
    assert not {"lint", "test", "image"} & set(ran)
    model = step_results(released.lines, "model")
    assert model["make candidate"] == "success" and "make train" not in model  # skipped
    assert model["make evaluate"] == "success"
    tags = registry_tags(workspace)
    assert tags["1.1.0"] == tags[f"sha-{workspace.commit[:7]}"] == tags["production"]
    assert deployed(workspace).startswith(f"{workspace.name.replace('/', '-')} 1.1.0 ")
    assert f"release create v1.1.0 --repo {workspace.name} --verify-tag" in \
        workspace.gh_calls.read_text()


@pytest.mark.timeout(1800)  # whole jobs, each installing as a fresh runner does
def test_running_the_release_again_changes_nothing(workspace, released):
    before = registry_tags(workspace)
    again = workspace.act("push", "ci.yml", workspace.event(ref="refs/tags/v1.1.0"),
                          "-j", "candidate")
    assert again.status == 0, failed(again)
    assert registry_tags(workspace) == before


@pytest.mark.timeout(1800)  # whole jobs, each installing as a fresh runner does
def test_rollback_from_a_tag_puts_the_release_before_back(workspace, production, released):
    run = workspace.act("workflow_dispatch", "rollback.yml",
                        {"ref": "refs/tags/v1.1.0", "inputs": {"version": ""},
                         **workspace.event()}, *production)
    text = actions_used(run.lines)
    assert run.status == 0, failed(run)
    assert jobs(run.lines) == {"target": "success", "deploy": "success"}
    assert deployed(workspace).startswith(f"{workspace.name.replace('/', '-')} 1.0.0 ")
    assert "Before: " in summary(run.lines) and " 1.1.0 " in summary(run.lines)
    steps = step_results(run.lines, "deploy")
    assert steps["make rollback"] == "success"
    # The emergency path installs the deploy extra alone: no TensorFlow on the way.
    assert "tensorflow" not in text.lower()
    # What README reports: from act's start on a fresh runner to the old release serving (the
    # end of `make rollback`; the smoke test of production follows).
    stamps = [datetime.datetime.fromisoformat(line["time"]) for line in run.lines]
    serving = next(datetime.datetime.fromisoformat(line["time"]) for line in run.lines
                   if line.get("step") == "make rollback" and "stepResult" in line)
    print(f"\nrollback.yml: the old release serves {(serving - min(stamps)).total_seconds():.0f} s "
          f"after the start; whole run {(max(stamps) - min(stamps)).total_seconds():.0f} s")
