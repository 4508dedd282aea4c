#!/usr/bin/env python3
"""Build the collection hapool.pool (galaxy.yml) from this repository: ``make collection``.

    scripts/build-collection.py                      # dist/hapool-pool-<version>.tar.gz
    scripts/build-collection.py --dist /tmp/out      # the tarball somewhere else
    scripts/build-collection.py --staging /tmp/tree  # keep the assembled tree (must not exist)

The repository keeps its own layout; the build assembles the collection's in a staging
directory, then runs ``ansible-galaxy collection build`` on it:

* galaxy.yml, meta/ (runtime.yml), README.md, CHANGELOG.md, LICENSE* when present;
* ``plugins/modules/``: every file of ``library/``;
* every directory of ``plugins/`` (module_utils, inventory, doc_fragments...);
* ``roles/``: every role without its ``molecule/`` scenarios and caches.

In the staged copy (never in the repository):

* the core's imports ``ansible.module_utils.hapool.<name>`` become
  ``ansible_collections.hapool.pool.plugins.module_utils.hapool.<name>``; the build fails if
  any ``ansible.module_utils.hapool`` is left in the staged tree;
* doc fragments of ``plugins/doc_fragments`` named in ``extends_documentation_fragment``
  become ``hapool.pool.<fragment>``;
* an inventory plugin's ``NAME`` and the ``choices`` of its ``plugin`` option become its fully
  qualified name (``plugin: hapool.pool.hapool`` in a ``*.hapool.yml`` file);
* roles are copied as they are: a role of a collection finds the modules of its own
  collection by their short names (Ansible searches the role's collection first).

Stdlib only. Exit status 0 with the tarball's path on stdout, 1 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".molecule", ".cache", ".ansible"
)
ROLE_IGNORED = shutil.ignore_patterns(
    "molecule", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".molecule", ".cache"
)
CORE_IMPORT = re.compile(r"\bansible\.module_utils\.hapool\b")
FRAGMENT_LIST = re.compile(r"^(?P<indent>[ \t]*)extends_documentation_fragment:[ \t]*(?P<inline>\S.*)?$")
LIST_ITEM = re.compile(r"^(?P<lead>[ \t]*-[ \t]+)(?P<name>[A-Za-z0-9_.]+)[ \t]*$")


class BuildError(Exception):
    """The collection cannot be built (the message says why)."""


def read_galaxy(path: Path) -> dict[str, str]:
    """namespace, name and version of galaxy.yml (top-level scalar keys; no YAML library needed)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^(namespace|name|version):\s*['\"]?([^'\"#\s]+)", line)
        if match:
            found[match.group(1)] = match.group(2)
    missing = {"namespace", "name", "version"} - set(found)
    if missing:
        raise BuildError(f"{path}: no {', '.join(sorted(missing))}")
    return found


def rewrite_fragments(text: str, fragments: set[str], fqcn: str) -> str:
    """``extends_documentation_fragment`` entries naming one of ``fragments`` -> ``<fqcn>.<name>``."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    in_list = False
    for line in lines:
        body = line.rstrip("\n")
        head = FRAGMENT_LIST.match(body)
        item = LIST_ITEM.match(body) if in_list and not head else None
        new = line
        if head:
            inline = (head.group("inline") or "").strip()
            if inline in fragments:
                new = f"{head.group('indent')}extends_documentation_fragment: {fqcn}.{inline}\n"
            in_list = not inline
        elif item and item.group("name") in fragments:
            new = f"{item.group('lead')}{fqcn}.{item.group('name')}\n"
        elif in_list and not item and body.strip() and not body.lstrip().startswith("#"):
            in_list = False
        out.append(new)
    return "".join(out)


def rewrite_inventory_plugin(text: str, stem: str, fqcn: str, path: Path) -> str:
    """An inventory plugin answers to ``plugin: <fqcn>.<stem>`` in its configuration files."""
    full = f"{fqcn}.{stem}"
    rules = [
        (re.compile(rf"^(\s*NAME\s*=\s*)(['\"]){re.escape(stem)}\2", re.M), rf"\g<1>\g<2>{full}\g<2>"),
        (re.compile(rf"^(\s*choices:\s*)\[\s*['\"]?{re.escape(stem)}['\"]?\s*\]", re.M), rf"\g<1>[{full}]"),
    ]
    for pattern, replacement in rules:
        text, count = pattern.subn(replacement, text)
        if count != 1:
            raise BuildError(
                f"{path}: expected one {pattern.pattern!r} to rename the plugin to {full}, found {count}"
            )
    return text.replace(f"must be V({stem})", f"must be V({full})")


def stage(staging: Path, galaxy: dict[str, str]) -> None:
    """Assemble the collection's tree in ``staging`` (an empty directory)."""
    for name in ("galaxy.yml", "README.md", "CHANGELOG.md"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, staging / name)
    for licence in sorted(ROOT.glob("LICENSE*")) + sorted(ROOT.glob("COPYING*")):
        shutil.copy2(licence, staging / licence.name)
    if not (ROOT / "meta" / "runtime.yml").is_file():
        raise BuildError("meta/runtime.yml is missing (requires_ansible)")
    shutil.copytree(ROOT / "meta", staging / "meta", ignore=IGNORED)

    plugins = staging / "plugins"
    for source in sorted((ROOT / "plugins").iterdir()):
        if source.is_dir() and source.name not in {"__pycache__", "modules"}:
            shutil.copytree(source, plugins / source.name, ignore=IGNORED)
    modules = plugins / "modules"
    modules.mkdir(parents=True)
    if (ROOT / "plugins" / "modules").is_dir():
        raise BuildError("plugins/modules/ exists in the repository: modules belong in library/")
    for module in sorted((ROOT / "library").iterdir()):
        if module.is_file() and not module.name.endswith(".pyc"):
            shutil.copy2(module, modules / module.name)

    roles = staging / "roles"
    for role in sorted((ROOT / "roles").iterdir()):
        if role.is_dir() and (role / "tasks").is_dir():
            shutil.copytree(role, roles / role.name, ignore=ROLE_IGNORED)
    rewrite(staging, galaxy)


def rewrite(staging: Path, galaxy: dict[str, str]) -> None:
    """The staged Python files in the collection's names (imports, doc fragments, plugin names)."""
    fqcn = f"{galaxy['namespace']}.{galaxy['name']}"
    core = f"ansible_collections.{galaxy['namespace']}.{galaxy['name']}.plugins.module_utils.hapool"
    plugins = staging / "plugins"
    fragments = {p.stem for p in (ROOT / "plugins" / "doc_fragments").glob("*.py") if p.stem != "__init__"}
    for path in sorted(staging.rglob("*.py")):
        text = path.read_text()
        new = CORE_IMPORT.sub(core, text)
        new = rewrite_fragments(new, fragments, fqcn)
        if path.parent == plugins / "inventory" and path.stem != "__init__":
            new = rewrite_inventory_plugin(new, path.stem, fqcn, path.relative_to(staging))
        if new != text:
            path.write_text(new)


def check(staging: Path) -> None:
    """No import of the repository's layout may survive in the collection."""
    left = []
    for path in sorted(staging.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".yml", ".yaml", ".j2", ".sh", ".cfg"}:
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if CORE_IMPORT.search(line):
                    left.append(f"  {path.relative_to(staging)}:{number}: {line.strip()}")
    if left:
        raise BuildError(
            "the repository's import path ansible.module_utils.hapool is left in the staged collection:\n"
            + "\n".join(left)
        )


def build(staging: Path, dist: Path, galaxy: dict[str, str]) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    galaxy_cli = shutil.which("ansible-galaxy") or str(Path(sys.executable).parent / "ansible-galaxy")
    proc = subprocess.run(
        [galaxy_cli, "collection", "build", str(staging), "--output-path", str(dist), "--force"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    tarball = dist / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    if proc.returncode != 0 or not tarball.is_file():
        raise BuildError(
            f"ansible-galaxy collection build failed (rc {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the collection tarball (galaxy.yml) into dist/.")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output directory (default dist/)")
    parser.add_argument("--staging", type=Path, help="assemble the tree here and keep it (must not exist)")
    args = parser.parse_args(argv)
    try:
        galaxy = read_galaxy(ROOT / "galaxy.yml")
        with tempfile.TemporaryDirectory(prefix="hapool-collection-") as tmp:
            staging = args.staging or Path(tmp) / "collection"
            if staging.exists():
                raise BuildError(f"{staging} exists: the staging directory must be new")
            staging.mkdir(parents=True)
            stage(staging, galaxy)
            check(staging)
            tarball = build(staging, args.dist.resolve(), galaxy)
    except (BuildError, OSError) as exc:
        print(f"build-collection: error: {exc}", file=sys.stderr)
        return 1
    print(tarball)
    return 0


if __name__ == "__main__":
    sys.exit(main())
