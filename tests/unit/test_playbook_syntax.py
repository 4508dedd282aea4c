"""`ansible-playbook --syntax-check` on every playbook of the project."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml"))
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"


def test_the_documented_playbooks_exist():
    names = {p.name for p in PLAYBOOKS}
    assert {"site.yml", "teardown.yml", "heal.yml", "scale.yml", "reconcile.yml"} <= names, names


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_syntax_check(playbook: pathlib.Path):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "--syntax-check", str(playbook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
