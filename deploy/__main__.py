"""python -m deploy {build,smoke,push,candidate,promote,deploy,rollback,status,releases,manifests}

Settings come from the Makefile's contract variables (IMAGE, VERSION, REGISTRY, PORT,
MODEL_NAME, MODEL_DIR, DEPLOY_TARGET, DOCKER, BASE_IMAGE, DOCKER_HOST) in the environment.
Exit status: 0 done, 1 failed (the message says what still runs), 2 usage error.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import docker.errors
import requests

from deploy import image, production, promote, releases
from deploy.docker_driver import DeployError, Release
from deploy.kubernetes_driver import KubernetesDriver
from deploy.registry import PRODUCTION_TAG, Registry, RegistryError
from deploy.settings import Settings
from deploy.smoke import smoke


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m deploy", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build, smoke-test and push the serving image; deploy and roll it back.",
        epilog=__doc__.split("\n", 2)[2])
    commands = main.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build IMAGE:VERSION and IMAGE:sha-<commit> with the "
                                      "model in MODEL_DIR")
    smoke = commands.add_parser("smoke", help="run the image, check a real prediction, stop it")
    smoke.add_argument("reference", nargs="?", help="image to test (default IMAGE:VERSION)")
    commands.add_parser("push", help="push IMAGE:VERSION and its sha- tag to REGISTRY")
    commands.add_parser("candidate", help="find the image the default branch published for this "
                                          "commit and copy its model to MODEL_DIR")
    commands.add_parser("promote", help="tag that image VERSION in REGISTRY: no rebuild")
    deploy = commands.add_parser("deploy", help="deploy REGISTRY/IMAGE:VERSION to DEPLOY_TARGET")
    deploy.add_argument("--version", help="release to deploy (default VERSION)")
    rollback = commands.add_parser("rollback", help="redeploy an earlier release, no rebuild")
    rollback.add_argument("--version", help="release to go back to (default: the last stable "
                                            "release that served before the deployed one)")
    status = commands.add_parser("status", help="what is deployed, and where")
    status.add_argument("--reference", action="store_true",
                        help="print only the deployed image reference (nothing when none)")
    commands.add_parser("releases", help="the releases in the registry, oldest first")
    commands.add_parser("champion", help="the production image the gate must beat, by digest "
                                         "(nothing when none was deployed yet)")
    manifests = commands.add_parser(
        "manifests", help="print what DEPLOY_TARGET=kubernetes applies: the overlay of "
                          "DEPLOY_ENVIRONMENT with an image by digest")
    manifests.add_argument("reference", help="the image, REPOSITORY@sha256:...")
    return main


def run(args: argparse.Namespace, settings: Settings) -> None:
    target = os.environ.get("DEPLOY_TARGET") or "docker"
    if args.command == "build":
        tags = image.build(settings)
        total, added = image.sizes(tags[0])
        print(f"built {', '.join(tags)}: {total / 1e6:.1f} MB, of which {added / 1e6:.1f} MB "
              f"over the base image {settings.base_image}")
    elif args.command == "smoke":
        reference = args.reference or f"{settings.image}:{settings.version}"
        result = smoke(reference, settings.model_name)
        print(f"smoke test of {reference} passed: ready in {result['ready_after_s']} s on port "
              f"{result['port']} as uid {result['uid']}; for {result['rows_from']} it predicts "
              f"{[[round(v, 4) for v in p] for p in result['predictions']]}, as the model does "
              f"(max difference {result['max_difference']:.2g}); clean stop")
    elif args.command == "push":
        digest = image.push(settings)
        print(f"pushed {settings.remote}:{settings.version} ({digest})")
    elif args.command in ("candidate", "promote"):
        promote_commit(args.command, settings)
    elif args.command == "manifests":
        release = Release(settings.version, args.reference)
        print(KubernetesDriver(settings).render(release), end="")
    elif args.command == "champion":
        reference = production.champion(settings, Registry(settings.registry))
        print(reference or "")
        print(f"the gate compares the candidate with {reference}" if reference else
              f"no production image in {settings.remote}: the gate checks the thresholds only",
              file=sys.stderr)
        if os.environ.get("GITHUB_OUTPUT"):
            with open(os.environ["GITHUB_OUTPUT"], "a") as output:
                output.write(f"reference={reference or ''}\n")
    elif args.command == "releases":
        registry = Registry(settings.registry)
        production_digest = registry.digest(settings.repository, PRODUCTION_TAG)
        for version in releases.known_versions(settings, registry):
            digest = registry.digest(settings.repository, version)
            print(f"{version}\t{digest}" + ("\tproduction" if digest == production_digest else ""))
    else:
        driver = releases.driver_for(target, settings)
        if args.command == "status":
            current = driver.current()
            if args.reference:
                print(current.image if current else "")
            elif current:
                print(f"{current.service} {current.version} ({current.image}) runs in "
                      f"{current.container} at {current.url}")
            else:
                print(f"{settings.service}: nothing deployed on {target}")
            return
        registry = Registry(settings.registry)
        started = time.monotonic()
        if args.command == "deploy":
            done = releases.deploy(settings, driver, registry, args.version or settings.version)
        else:
            done = releases.rollback(settings, driver, registry, args.version)
        print(f"{args.command}: {done.service} {done.version} ({done.image}) serves at "
              f"{done.url} ({time.monotonic() - started:.1f} s); registry tag "
              f"{settings.remote}:{driver.environment} points to it")


def promote_commit(command: str, settings: Settings) -> None:
    """Build once, promote the digest (deploy/promote.py). Both print the digest and, in a
    GitHub Actions step, set its output `digest` (empty when there is no candidate)."""
    commit = image.git("rev-parse", "HEAD")
    registry = Registry(settings.registry)
    if command == "candidate":
        found = promote.find(settings, registry, commit)
        if found is None:
            print(f"no image of commit {commit[:7]} in {settings.remote}: the release "
                  f"{settings.version} trains and builds its own")
        else:
            image.extract_model(found.reference(settings), Path(settings.model_dir))
            print(f"release {settings.version}: {found.reference(settings)} ({found.source}), "
                  f"published for commit {commit[:7]} after its checks; its model is in "
                  f"{settings.model_dir}/: no retraining, no rebuild")
    else:
        found = promote.promote(settings, registry, commit)
        print(f"{settings.remote}:{settings.version} "
              + ("already is" if found.released else "now is")
              + f" {found.reference(settings)} ({found.source}): promoted, not rebuilt")
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a") as output:
            output.write(f"digest={found.digest if found else ''}\n")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        run(args, Settings.from_env())
    except (DeployError, image.ImageError, RegistryError, docker.errors.DockerException,
            requests.RequestException) as error:
        print(f"{parser().prog} {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
