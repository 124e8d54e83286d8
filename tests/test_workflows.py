"""The GitHub Actions workflows, read as data: triggers, job graph, permissions, pins, the make
targets they call, and the checks reviewers run first (zizmor, the workflow schema, shellcheck
over every `run:` script). tests/test_act.py runs the jobs that can run offline.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GITHUB = REPO / ".github"
WORKFLOWS = {path.stem: path for path in sorted((GITHUB / "workflows").glob("*.yml"))}
ACTIONS = sorted((GITHUB / "actions").glob("*/action.yml"))
BIN = REPO / ".venv" / "bin"
# Third-party actions: owner/repo[/path]@<40 hex> # v<version>
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")
MAKE_CALL = re.compile(r"(?:^|[;&|(]\s*|\s)make\s+((?:-\S+\s+)*)([\w$\"{}-]+)")


def load(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in document:
        document["on"] = document.pop(True)
    return document


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    return {name: load(path) for name, path in WORKFLOWS.items()}


def steps_of(document: dict):
    """(job id, step) for every step of a workflow, or of a composite action (job None)."""
    if "runs" in document:
        for step in document["runs"].get("steps", []):
            yield None, step
        return
    for job_id, job in document["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def all_documents():
    yield from ((path, load(path)) for path in WORKFLOWS.values())
    yield from ((path, load(path)) for path in ACTIONS)


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


def test_the_expected_workflows_exist():
    assert set(WORKFLOWS) == {"ci", "release", "rollback", "deploy"}
    assert [path.parent.name for path in ACTIONS] == ["setup"]


def test_triggers(workflows):
    ci, release = workflows["ci"]["on"], workflows["release"]["on"]
    assert ci["push"] == {"branches": ["**"]}, "tags belong to release.yml, not to ci.yml"
    assert "pull_request" in ci and "workflow_call" in ci
    assert release == {"push": {"tags": ["v*.*.*"]}}
    assert set(workflows["rollback"]["on"]) == {"workflow_dispatch"}
    assert set(workflows["deploy"]["on"]) == {"workflow_call"}
    for name, document in workflows.items():
        assert "pull_request_target" not in document["on"], name
        assert "workflow_run" not in document["on"], name


def test_permissions_are_read_only_except_where_a_job_needs_more(workflows):
    writes = set()
    for name, document in workflows.items():
        assert document["permissions"] == {"contents": "read"}, name
        for job_id, job in document["jobs"].items():
            for scope, level in job.get("permissions", {}).items():
                assert level in ("read", "write", "none"), (name, job_id, scope)
                if level == "write":
                    writes.add((name, job_id, scope))
    assert writes == {
        ("ci", "report", "pull-requests"),
        ("ci", "publish", "packages"), ("ci", "publish", "id-token"),
        ("ci", "publish", "attestations"),
        ("deploy", "deploy", "packages"),
        ("release", "github-release", "contents"),
        # Callers of reusable workflows grant what the called jobs ask for, no more.
        ("release", "ci", "packages"), ("release", "ci", "id-token"),
        ("release", "ci", "attestations"), ("release", "ci", "pull-requests"),
        ("release", "staging", "packages"), ("release", "deploy", "packages"),
        ("rollback", "rollback", "packages"),
    }
    text = "\n".join(path.read_text() for path in WORKFLOWS.values())
    assert "write-all" not in text and "secrets: inherit" not in text


def test_every_job_has_a_timeout(workflows):
    for name, document in workflows.items():
        for job_id, job in document["jobs"].items():
            if "uses" in job:  # a reusable workflow's call: its own jobs carry the timeouts
                continue
            assert 0 < job["timeout-minutes"] <= 60, (name, job_id)


def test_third_party_actions_are_pinned_to_a_commit_with_the_version_in_a_comment():
    pinned = 0
    for path, _ in all_documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"^\s*(?:- )?uses: (.+)$", line)
            if not match or match.group(1).startswith("./"):
                continue
            assert PINNED.match(match.group(1)), f"{path.name}:{number}: {line.strip()}"
            pinned += 1
    assert pinned >= 10


def test_one_version_of_each_action_everywhere():
    versions = {}
    for path, _ in all_documents():
        for reference in re.findall(r"uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40})", path.read_text()):
            versions.setdefault(reference[0], set()).add(reference[1])
    assert versions and all(len(shas) == 1 for shas in versions.values()), versions


def test_no_expression_is_interpolated_into_a_shell_script():
    for path, document in all_documents():
        for job_id, step in steps_of(document):
            if "run" in step:
                assert "${{" not in step["run"], (path.name, job_id, step.get("name"))


def test_checkouts_keep_no_credentials():
    for path, document in all_documents():
        for job_id, step in steps_of(document):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, (path.name, job_id)


def make_targets() -> set[str]:
    """The targets `make help` lists (each has a ## description)."""
    listing = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
    return set(re.findall(r"^\s+make (\S+)", listing, re.MULTILINE))


def test_every_make_target_a_workflow_calls_exists(workflows):
    targets = make_targets()
    called = set()
    for path, document in all_documents():
        for job_id, step in steps_of(document):
            for options, target in MAKE_CALL.findall(step.get("run", "")):
                called.add(target)
    # deploy.yml runs `make "$COMMAND"`: its callers say which command.
    assert '"$COMMAND"' in called
    called.discard('"$COMMAND"')
    commands = {job["with"]["command"] for document in workflows.values()
                for job in document["jobs"].values()
                if job.get("uses") == "./.github/workflows/deploy.yml"}
    assert commands == {"deploy", "rollback"}
    called |= commands
    assert called == {"lint", "test", "provision", "train", "evaluate", "build", "smoke", "push",
                      "deploy", "rollback", "status", "candidate", "champion", "promote",
                      "test-kubernetes"}
    assert called <= targets, f"not in the Makefile: {called - targets}"
    assert "act" in targets


def needs(job: dict) -> set[str]:
    value = job.get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def test_ci_job_graph(workflows):
    jobs = workflows["ci"]["jobs"]
    assert {job_id: needs(job) for job_id, job in jobs.items()} == {
        "candidate": set(), "lint": {"candidate"}, "test": {"candidate"},
        "kubernetes": {"candidate"},
        "model": {"candidate"}, "report": {"model"}, "image": {"candidate", "model"},
        # Only an image whose code passed lint, tests and the gate is published.
        "publish": {"candidate", "lint", "test", "model", "image"},
    }
    # Published: the image built here, or on a tag the one the default branch published for
    # the commit (promoted); never after a failure anywhere upstream.
    assert jobs["publish"]["if"] == (
        "${{ !cancelled() && !failure() && (needs.image.outputs.publish == 'true' || "
        "startsWith(needs.candidate.outputs.digest, 'sha256:')) }}")
    # The test job's registry, as GitHub users run one; the tests delete what they push.
    assert jobs["test"]["services"]["registry"] == {
        "image": "registry:2", "ports": ["127.0.0.1:5000:5000"],
        "env": {"REGISTRY_STORAGE_DELETE_ENABLED": "true"}}
    publish = workflows["ci"]["env"]["PUBLISH"]
    assert "github.event_name == 'push'" in publish and "refs/tags/" in publish
    assert "pull_request" in jobs["report"]["if"]
    assert "head.repo.full_name == github.repository" in jobs["report"]["if"]
    text = WORKFLOWS["ci"].read_text()
    assert "deploy.yml" not in text and "environment:" not in text, "CI never deploys"


def test_the_cluster_tests_run_in_a_job_of_their_own_that_nothing_waits_for(workflows):
    """A kind cluster that cannot start on a runner shows red in the kubernetes job and
    blocks neither the other tests nor the image and its publication."""
    jobs = workflows["ci"]["jobs"]
    runs = {job_id: [step.get("run") for step in job.get("steps", [])]
            for job_id, job in jobs.items()}
    assert "make test PYTEST_ARGS=--ignore=tests/test_kubernetes.py" in runs["test"]
    assert runs["kubernetes"][-1] == "make test-kubernetes"
    assert jobs["kubernetes"]["if"] == jobs["test"]["if"]
    assert not any("kubernetes" in needs(job) for job in jobs.values())
    test_kubernetes = subprocess.run(["make", "-n", "test-kubernetes"], cwd=REPO, check=True,
                                     capture_output=True, text=True).stdout
    assert "pytest --no-cov tests/test_kubernetes.py" in test_kubernetes


def test_a_production_deploy_goes_through_the_canary(workflows):
    step = next(step for _, step in steps_of(workflows["deploy"])
                if step.get("name") == "make ${{ inputs.command }}")
    assert step["env"]["CANARY"] == ("${{ inputs.command == 'deploy' && inputs.environment == "
                                     "'production' && (vars.CANARY || '1') || '0' }}")
    assert step["env"]["CANARY_WINDOW"] == "${{ vars.CANARY_WINDOW }}"


def test_deploys_only_from_a_gated_tag_or_by_hand(workflows):
    callers = {(name, job_id) for name, document in workflows.items()
               for job_id, job in document["jobs"].items()
               if job.get("uses") == "./.github/workflows/deploy.yml"}
    assert callers == {("release", "staging"), ("release", "deploy"), ("rollback", "rollback")}
    release = workflows["release"]["jobs"]
    # The gate: ci.yml (lint, tests, evaluation against production, image) after the tag check.
    assert release["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert needs(release["ci"]) == {"version"}
    # Kubernetes: staging first (its own overlay), then the same version, so the same digest,
    # to production; production never runs after a failed staging deploy.
    assert needs(release["staging"]) == {"version", "ci"}
    assert release["staging"]["if"] == ("${{ !contains(needs.version.outputs.version, '-') && "
                                        "vars.DEPLOY_TARGET == 'kubernetes' }}")
    assert release["staging"]["with"] == {"command": "deploy", "environment": "staging",
                                          "version": "${{ needs.version.outputs.version }}"}
    assert needs(release["deploy"]) == {"version", "ci", "staging"}
    assert release["deploy"]["if"] == ("${{ !cancelled() && !failure() && "
                                       "!contains(needs.version.outputs.version, '-') }}")
    assert release["deploy"]["with"] == {"command": "deploy",
                                         "version": "${{ needs.version.outputs.version }}"}
    assert needs(release["github-release"]) == {"version", "ci"}
    deploy = workflows["deploy"]["jobs"]
    assert needs(deploy["deploy"]) == {"target"}
    assert deploy["deploy"]["if"] == "needs.target.outputs.configured == 'true'"
    assert deploy["deploy"]["environment"] == "${{ inputs.environment }}"
    environment = workflows["deploy"]["on"]["workflow_call"]["inputs"]["environment"]
    assert environment["default"] == "production"
    assert deploy["deploy"]["env"]["DEPLOY_ENVIRONMENT"] == "${{ inputs.environment }}"
    assert "environment" not in deploy["target"]


def test_release_and_rollback_share_one_concurrency_group_per_environment(workflows):
    job = workflows["deploy"]["jobs"]["deploy"]
    assert job["concurrency"] == {"group": f"deploy-{job['environment']}",
                                  "cancel-in-progress": False}


def test_a_publishing_run_is_never_cancelled(workflows):
    ci = workflows["ci"]
    publishing = ci["env"]["PUBLISH"].removeprefix("${{ ").removesuffix(" }}")
    # The concurrency key cannot read env: the same condition, written out.
    assert ci["concurrency"] == {
        "group": "${{ github.workflow }}-${{ github.ref }}${{ " + publishing
                 + " && format('-{0}', github.sha) || '' }}",
        "cancel-in-progress": "${{ !(" + publishing + ") }}"}
    # No job of the publishing path sets a concurrency that could cancel it either.
    assert all("concurrency" not in job for job in ci["jobs"].values())


def test_the_attestation_runs_where_it_works_and_never_fails_the_publish(workflows):
    steps = workflows["ci"]["jobs"]["publish"]["steps"]
    names = [step.get("uses", step.get("name", "")).split("@")[0] for step in steps]
    attest = steps[names.index("actions/attest-build-provenance")]
    attest_at = names.index("actions/attest-build-provenance")
    assert names.index("make push, or make promote") < attest_at
    assert attest["continue-on-error"] is True
    # On by default where GitHub offers it (public repositories); a repository variable
    # turns it on (private, Enterprise Cloud) or off.
    assert attest["if"] == ("vars.ATTEST_PROVENANCE == 'true' || (vars.ATTEST_PROVENANCE != "
                            "'false' && !github.event.repository.private)")
    summary = steps[names.index("actions/attest-build-provenance") + 1]
    assert summary["env"]["OUTCOME"] == "${{ steps.attest.outcome }}"
    assert "::warning" in summary["run"] and "if" not in summary


def test_the_rollback_input_reaches_make_rollback_through_the_environment(workflows):
    version = workflows["rollback"]["on"]["workflow_dispatch"]["inputs"]["version"]
    assert version["required"] is False and version["default"] == ""
    assert workflows["rollback"]["jobs"]["rollback"]["with"] == {
        "command": "rollback", "version": "${{ inputs.version }}"}
    deploy = workflows["deploy"]["jobs"]
    for job in ("target", "deploy"):
        env = deploy[job].get("env") or next(
            step["env"] for step in deploy[job]["steps"] if "RELEASE" in step.get("env", {}))
        assert env["RELEASE"] == "${{ inputs.version }}"
        assert env["COMMAND"] == "${{ inputs.command }}"
    runs = [step["run"] for step in deploy["deploy"]["steps"] if "make \"$COMMAND\"" in
            step.get("run", "")]
    assert len(runs) == 1
    # An empty input leaves VERSION unset, so make rollback goes to the release before.
    assert 'make "$COMMAND" ${RELEASE:+VERSION="$RELEASE"}' in runs[0]


def test_caches_and_dependabot():
    setup = load(ACTIONS[0])["runs"]["steps"][0]
    assert setup["uses"].startswith("actions/setup-python@")
    assert setup["with"] == {"python-version": "3.11", "cache": "pip",
                             "cache-dependency-path": "pyproject.toml"}
    dependabot = load(GITHUB / "dependabot.yml")
    assert {update["package-ecosystem"] for update in dependabot["updates"]} == {
        "pip", "docker", "github-actions"}


def test_zizmor_finds_nothing_at_medium_severity_or_above():
    result = subprocess.run([BIN / "zizmor", "--offline", "--format", "json", "--no-progress",
                             str(GITHUB)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode in (0, 10, 11, 12, 13, 14), result.stderr  # 1x: findings
    findings = json.loads(result.stdout)
    serious = [(finding["ident"], finding["determinations"]["severity"]) for finding in findings
               if finding["determinations"]["severity"] in ("Medium", "High")]
    assert serious == []


def test_workflows_actions_and_dependabot_match_their_schemas():
    for schema, paths in (("vendor.github-workflows", WORKFLOWS.values()),
                          ("vendor.github-actions", ACTIONS),
                          ("vendor.dependabot", [GITHUB / "dependabot.yml"])):
        result = subprocess.run([BIN / "check-jsonschema", "--builtin-schema", schema,
                                 *map(str, paths)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_run_script_passes_shellcheck(tmp_path):
    if not shutil.which("shellcheck"):
        unavailable("shellcheck is not installed; `make provision` installs it")
    scripts = []
    for path, document in all_documents():
        for job_id, step in steps_of(document):
            if "run" in step:
                script = tmp_path / f"{path.stem}-{job_id}-{len(scripts)}.sh"
                # What GitHub runs for `shell: bash` (both workflows set it as the default).
                script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"])
                scripts.append(script)
    assert len(scripts) >= 15
    result = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dependabot_sees_the_default_base_image_and_make_passes_it():
    """Dependabot's docker updater reads `FROM <image>:<tag>` lines and skips a FROM of an
    ${ARG} (dependabot-core#2057): the default base must be named in a FROM line, and the
    Makefile's BASE_IMAGE default must follow it, or its updates never reach a build."""
    lines = (REPO / "Dockerfile").read_text().splitlines()
    stages = {match.group(2): match.group(1) for line in lines
              if (match := re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)$", line, re.IGNORECASE))}
    images = [line.split()[1] for line in lines if line.startswith("FROM ")
              and "$" not in line.split()[1] and line.split()[1] not in stages]
    assert images == ["python:3.11-slim"]
    # BASE_IMAGE's default names that stage, so a plain `docker build .` uses it ...
    assert "ARG BASE_IMAGE=python-base" in lines and stages["python-base"] == images[0]
    assert [line for line in lines if line.startswith("FROM ") and "BASE_IMAGE" in line] == [
        "FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE}"]
    # ... and make's default is read from that line (local.env, written by provision, and the
    # environment still win: the BASE_IMAGE contract).
    env = {key: value for key, value in os.environ.items() if key != "BASE_IMAGE"}
    default = subprocess.run(["make", "-s", "--eval", "print-base: ; @echo $(BASE_IMAGE)",
                              "print-base", "-f", "Makefile", "machine="],
                             cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert default.stdout.strip() == "python:3.11-slim"
    chosen = subprocess.run(["make", "-s", "--eval", "print-base: ; @echo $(BASE_IMAGE)",
                             "print-base"], cwd=REPO, capture_output=True, text=True, check=True,
                            env={**env, "BASE_IMAGE": "example/base:1"})
    assert chosen.stdout.strip() == "example/base:1"


def test_a_release_promotes_the_published_image_and_builds_only_without_one(workflows):
    """Build once, promote the digest: on a tag, the candidate job looks for the commit's image
    (make candidate). With one: no lint or tests again (they passed for this commit), no
    training (the model job gates the image's model), no build, and publish runs make promote."""
    jobs = workflows["ci"]["jobs"]
    assert jobs["candidate"]["if"] == "startsWith(github.ref, 'refs/tags/')"
    assert [step.get("run") for step in jobs["candidate"]["steps"]][-1] == "make candidate"
    assert jobs["candidate"]["outputs"]["digest"] == "${{ steps.candidate.outputs.digest }}"
    promoted = "startsWith(needs.candidate.outputs.digest, 'sha256:')"
    for job in ("lint", "test", "image"):
        assert jobs[job]["if"] == f"${{{{ !cancelled() && !failure() && !{promoted} }}}}"
    assert jobs["model"]["if"] == "${{ !cancelled() && !failure() }}"
    model = {step.get("name", step.get("run", step.get("uses"))): step
             for step in jobs["model"]["steps"]}
    assert model["make candidate"]["if"] == promoted
    assert model["make train"]["if"] == f"${{{{ !{promoted} }}}}"
    assert "if" not in model["make evaluate"]
    publish = {step.get("name", step.get("run", step.get("uses", ""))): step
               for step in jobs["publish"]["steps"]}
    push = publish["make push, or make promote"]
    assert push["env"]["CANDIDATE"] == (
        f"${{{{ {promoted} && needs.candidate.outputs.digest || '' }}}}")
    assert 'if [ -n "$CANDIDATE" ]; then make promote' in push["run"]
    for name, step in publish.items():
        if "image" in str(step.get("with", {}).get("name", "")) or "docker load" in name:
            assert step["if"] == f"${{{{ !{promoted} }}}}", name


# Every command in README's "Adopting this template", and the test that runs it; None where it
# needs github.com, ghcr.io or the user's own host (README marks those "(github.com)", and
# tests/test_act.py runs the workflows they start, against a local registry and engine).
ADOPTION_COMMANDS = {
    # .ci/run runs `make provision`; the pipeline's targets (lint, test, train, evaluate, build,
    # smoke, push, deploy) run in tests/test_act.py's ci.yml and release.yml runs.
    "make provision pipeline": "test_a_push_to_main_runs_every_check_and_publishes_the_image",
    "git tag v0.1.0 && git push origin v0.1.0": None,
    "gh attestation verify oci://ghcr.io/<owner>/<repo>:0.1.0 --repo <owner>/<repo>": None,
    "ssh-keygen -t ed25519 -N '' -f deploy_key": "test_the_adoption_key_command_makes_a_key_pair",
    "ssh-keyscan host": None,
    "gh workflow run rollback.yml --ref v1.3.0 -f version=1.2.0": None,
    "DOCKER_HOST=ssh://deploy@host make rollback VERSION=1.2.0 REGISTRY=ghcr.io "
    "IMAGE=<owner>/<repo>": None,
    "docker login ghcr.io": None,
    "make train evaluate": "test_a_pull_request_from_the_repository_gets_its_report_as_one_comment",
}
COMMAND_WORDS = ("make ", "git ", "gh ", "ssh-", "docker ", "DOCKER_HOST=")


def adoption_section() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("## Adopting this template"):]


def test_every_adoption_command_is_run_by_a_test_or_marked_as_needing_github():
    section = adoption_section()
    spans = [(" ".join(match.group(1).split()), section[match.end():match.end() + 20])
             for match in re.finditer(r"`([^`]+)`", section)]
    commands = {span: after for span, after in spans if span.startswith(COMMAND_WORDS)}
    assert set(commands) == set(ADOPTION_COMMANDS)
    tests = {path.stem: path.read_text() for path in (REPO / "tests").glob("test_*.py")}
    for command, test in ADOPTION_COMMANDS.items():
        marked = " ".join(commands[command].split()).startswith("*(github.com)*")
        assert marked == (test is None), command
        if test:
            assert any(f"def {test}(" in text for text in tests.values()), test


def test_the_adoption_key_command_makes_a_key_pair(tmp_path):
    command = next(command for command in ADOPTION_COMMANDS if command.startswith("ssh-keygen"))
    if not shutil.which("ssh-keygen"):
        unavailable("ssh-keygen is not installed (openssh-client)")
    subprocess.run(command, shell=True, cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "deploy_key").read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY")
    assert (tmp_path / "deploy_key.pub").read_text().startswith("ssh-ed25519 ")
