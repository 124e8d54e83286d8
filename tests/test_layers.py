"""The package layers hold: contract/ at the bottom, training/, service/ and deploy/ each on it
and independent of each other (import-linter, contracts in pyproject.toml)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_a_broken_layer_is_caught(tmp_path):
    """The check can fail: a copy of the tree where the contract imports training."""
    for package in ("contract", "training", "service", "deploy"):
        subprocess.run(["cp", "-r", str(ROOT / package), str(tmp_path / package)], check=True)
    subprocess.run(["cp", str(ROOT / "pyproject.toml"), str(tmp_path)], check=True)
    with (tmp_path / "contract" / "schema.py").open("a") as f:
        f.write("\nimport training.config  # noqa: E402,F401\n")
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "contract.schema -> training.config" in result.stdout
