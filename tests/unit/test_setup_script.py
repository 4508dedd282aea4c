"""scripts/setup.sh when it may not install packages itself (not root): it names exactly what is
missing, prints the commands that install it, stops with an error and changes nothing."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOBODY = 65534
# Commands setup.sh probes for in the directories of PATH (the rest are in /usr/sbin, which the
# probe always adds): hiding them from PATH makes their packages "missing".
HIDDEN = ("wrk", "socat", "vagrant")


@pytest.fixture
def sandbox() -> Iterator[pathlib.Path]:
    """A copy of setup.sh in a directory nobody owns, and a PATH without the hidden commands."""
    if os.geteuid() != 0:
        pytest.fail("this test drops privileges to 'nobody' and must start as root (as make test does)")
    # Not under pytest's tmp_path: its parent is private to root, and the script runs as nobody.
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="hapool-setup-"))
    tmp_path.chmod(0o755)
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for entry in pathlib.Path("/usr/bin").iterdir():
        if entry.name not in HIDDEN:
            (bindir / entry.name).symlink_to(entry)
    for path in [tmp_path, project, project / "scripts", bindir]:
        os.chown(path, NOBODY, NOBODY)
    try:
        yield tmp_path
    finally:
        shutil.rmtree(tmp_path)


def run_as_nobody(sandbox: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "bash", str(sandbox / "project" / "scripts" / "setup.sh")],
        env={"PATH": str(sandbox / "bin"), "HOME": str(sandbox)},
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_not_root_names_the_missing_packages_and_how_to_install_them(sandbox: pathlib.Path):
    for cmd in HIDDEN:
        assert shutil.which(cmd), f"{cmd} is not installed here, so this test cannot hide it"
    proc = run_as_nobody(sandbox)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "[setup] ERROR: these system packages are missing: socat wrk vagrant", lines
    # One install command per kind of package, naming exactly the missing ones, then what to do next.
    assert "    sudo apt-get install -y socat wrk" in lines, lines
    assert "    sudo apt-get install -y --no-install-recommends vagrant" in lines, lines
    assert lines[-1] == "[setup] then run 'make setup' again.", lines
    # It stopped there: no virtual environment, nothing but its state folder next to the script.
    assert sorted(p.name for p in (sandbox / "project").iterdir()) == [".state", "scripts"]


def test_a_package_that_is_present_is_not_named(sandbox: pathlib.Path):
    (sandbox / "bin" / "vagrant").symlink_to(shutil.which("vagrant") or "/usr/bin/vagrant")
    proc = run_as_nobody(sandbox)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "missing: socat wrk\n" in proc.stderr + "\n", proc.stderr
    assert "vagrant" not in proc.stderr, proc.stderr
