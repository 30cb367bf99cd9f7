"""A missing ``../shared`` (the reference data) is never silent: pytest's header and summary say
what was skipped and how to get the data, and ``.ci/run`` fails on CI before the tests run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
CONFTEST = REPO / "tests" / "conftest.py"
CI_RUN = REPO / ".ci" / "run"


def load_conftest():
    """tests/conftest.py under its own module name (several conftest.py share the name "conftest")."""
    spec = importlib.util.spec_from_file_location("napari_seem_tests_conftest", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def skipped(reason: str):
    return SimpleNamespace(longrepr=("some_test.py", 1, f"Skipped: {reason}"))


def test_header_says_where_the_shared_folder_is_or_that_it_is_missing(tmp_path, monkeypatch):
    conftest = load_conftest()
    monkeypatch.delenv("SEEM_PARITY_FIXTURES", raising=False)
    missing = tmp_path / "shared"
    line = conftest.shared_header(missing)
    assert line.startswith("napari-seem: ../shared not found") and "skipped" in line
    assert "parity fixtures" in line and "place the project's shared folder beside the clone" in line
    missing.mkdir()
    assert conftest.shared_header(missing) == f"napari-seem: reference data (../shared) found at {missing}"
    assert conftest.pytest_report_header(None) == conftest.shared_header(conftest.SHARED)


def test_summary_counts_only_the_skips_for_the_reference_data(tmp_path):
    conftest = load_conftest()
    reports = [skipped("SEEM parity fixtures not found (set SEEM_PARITY_FIXTURES)"),
               skipped("key manifests not found"),
               skipped("shared stardist_synthetic_3d data not available"),
               skipped("/x/shared/parity/fill_weights.py not found"),
               skipped("the embedded default model file is not installed"),
               skipped("this machine has CUDA")]
    line = conftest.shared_summary(reports, tmp_path / "shared")
    assert line.startswith("napari-seem: ../shared not found: 4 tests that need the reference data")
    assert line.endswith("place the project's shared folder beside the clone (../shared) to run them")
    (tmp_path / "shared").mkdir()
    assert conftest.shared_summary(reports, tmp_path / "shared") is None


def test_a_pytest_run_without_shared_prints_the_header_and_the_count(pytester):
    """End to end: a copy of tests/conftest.py in a clone with no ../shared beside it."""
    tests = pytester.path / "clone" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(CONFTEST, tests / "conftest.py")
    (tests / "test_some.py").write_text(
        "import pytest\n"
        "def test_runs():\n    pass\n"
        "@pytest.mark.skipif(True, reason='SEEM parity fixtures not found')\n"
        "def test_parity():\n    pass\n"
        "@pytest.mark.skipif(True, reason='key manifests not found')\n"
        "def test_keys():\n    pass\n"
        "@pytest.mark.skipif(True, reason='unrelated')\n"
        "def test_other():\n    pass\n")
    args = ("-p", "no:xvfb", "-p", "no:cacheprovider", str(tests))
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["napari-seem: ../shared not found (*): the tests that need the reference data*"])
    result.stdout.fnmatch_lines(["napari-seem: ../shared not found: 2 tests that need the reference data*"])

    (pytester.path / "shared").mkdir()
    result = pytester.runpytest(*args)
    result.stdout.fnmatch_lines([f"napari-seem: reference data (../shared) found at {pytester.path / 'shared'}"])
    result.stdout.no_fnmatch_line("*../shared not found*")


@pytest.fixture
def fake_clone(tmp_path):
    """A clone with a copy of .ci/run whose scripts/test.sh only leaves a mark (no tests run)."""
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    (clone / "scripts").mkdir()
    shutil.copy(CI_RUN, clone / ".ci" / "run")
    (clone / "scripts" / "test.sh").write_text('touch "$(dirname "$0")/../test_sh_ran"\nexit 0\n')
    return clone


def ci_run(clone: Path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", "NAPARI_SEEM_ALLOW_NO_SHARED")}
    environ.update(env)
    return subprocess.run(["bash", str(clone / ".ci" / "run")], env=environ, capture_output=True, text=True,
                          timeout=60)


def test_ci_run_fails_without_shared_before_the_tests(fake_clone):
    result = ci_run(fake_clone)                                  # CI unset: .ci/run sets CI=true
    assert result.returncode != 0
    assert "[ci] error: ../shared not found" in result.stderr and "NAPARI_SEEM_ALLOW_NO_SHARED=1" in result.stderr
    assert not (fake_clone / "test_sh_ran").exists()
    assert ci_run(fake_clone, CI="1").returncode != 0


@pytest.mark.parametrize("env", [{"NAPARI_SEEM_ALLOW_NO_SHARED": "1"}, {"CI": "false"}])
def test_ci_run_only_warns_without_shared_when_allowed_or_off_ci(fake_clone, env):
    result = ci_run(fake_clone, **env)
    assert result.returncode == 0, result.stderr
    assert "[ci] warning: ../shared not found" in result.stderr
    assert (fake_clone / "test_sh_ran").exists()


def test_ci_run_runs_the_tests_with_shared(fake_clone):
    (fake_clone.parent / "shared").mkdir()
    result = ci_run(fake_clone)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (fake_clone / "test_sh_ran").exists()
