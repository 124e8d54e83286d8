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

import json
import os
import subprocess
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
