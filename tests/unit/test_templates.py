"""templates.py without a provider: hashing, versions, personalization, the index, the decisions.

Trees are built in ``tmp_path``; time is a number passed in, as the decisions take it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.hapool.errors import HapoolError, InvalidNameError, TemplateError
from ansible.module_utils.hapool.templates import (
    ADDRESS,
    HOST,
    PLACEHOLDER_RE,
    PLACEHOLDERS,
    POOL,
    PORT,
    PREFIX,
    TemplateIndex,
    TemplateInputs,
    TemplateVersion,
    _walk,
    drop_versions,
    file_digest,
    file_digests,
    hosts_behind,
    index_path,
    personalize,
    personalize_tree,
    plan_bake,
    plan_gc,
    read_index,
    record_bake,
    template_files,
    template_version,
    templatize,
    templatize_tree,
    write_index,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

V1, V2, V3, V4, V5 = (f"{n:012x}" for n in (0xA1, 0xB2, 0xC3, 0xD4, 0xE5))
VALUES = {HOST: "web-3f9a2c", POOL: "web", ADDRESS: "127.0.0.1", PORT: "8081"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes | str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


# --- placeholders -----------------------------------------------------------------------------------


def test_placeholders_are_the_five_known_ones_and_match_the_pattern() -> None:
    assert set(PLACEHOLDERS) == {
        "@@HAPOOL_HOST@@",
        "@@HAPOOL_POOL@@",
        "@@HAPOOL_ADDRESS@@",
        "@@HAPOOL_PORT@@",
        "@@HAPOOL_PREFIX@@",
    }
    assert PREFIX == "@@HAPOOL_PREFIX@@"
    assert "directory" in PLACEHOLDERS[PREFIX]
    assert all(PLACEHOLDER_RE.fullmatch(p) for p in PLACEHOLDERS)
    assert all(PLACEHOLDERS.values())  # each has its meaning
    assert issubclass(TemplateError, HapoolError)


# --- file_digests -----------------------------------------------------------------------------------


def role_tree(root: Path) -> Path:
    write(root / "tasks" / "main.yml", "- name: x\n")
    write(root / "templates" / "nginx.conf.j2", "server_name {{ nginx_web_hostname }};\n")
    write(root / "files" / "logo.png", b"\x89PNG\0\xff")
    write(root / "README.md", "generated\n")
    write(root / "molecule" / "default" / "converge.yml", "- hosts: all\n")
    write(root / "library" / "__pycache__" / "x.cpython-311.pyc", b"\0")
    write(root / "library" / "helper.pyc", b"\0")
    write(root / "library" / "helper.py", "print(1)\n")
    return root


def test_file_digests_hashes_every_file_sorted_with_posix_keys_and_skips_the_defaults(tmp_path: Path) -> None:
    root = role_tree(tmp_path / "role")
    digests = file_digests(root)
    assert list(digests) == [
        "files/logo.png",
        "library/helper.py",
        "tasks/main.yml",
        "templates/nginx.conf.j2",
    ]
    assert digests["files/logo.png"] == sha(b"\x89PNG\0\xff")
    assert digests["tasks/main.yml"] == sha(b"- name: x\n")
    assert file_digests(str(root)) == digests  # a str path too


@pytest.mark.parametrize(
    ("exclude", "expected"),
    [
        ((), {"a.txt", "README.md", "molecule/m.yml", "sub/README.md", "sub/b.log"}),
        (("*.log",), {"a.txt", "README.md", "molecule/m.yml", "sub/README.md"}),
        (("README.md",), {"a.txt", "molecule/m.yml", "sub/b.log"}),  # a name: at any depth
        (("sub/README.md",), {"a.txt", "README.md", "molecule/m.yml", "sub/b.log"}),  # a path: that one
        (("molecule", "sub"), {"a.txt", "README.md"}),  # a directory goes with what it holds
    ],
)
def test_file_digests_exclude_patterns(tmp_path: Path, exclude: tuple[str, ...], expected: set[str]) -> None:
    for rel in ("a.txt", "README.md", "molecule/m.yml", "sub/README.md", "sub/b.log"):
        write(tmp_path / rel, rel)
    assert set(file_digests(tmp_path, exclude=exclude)) == expected
    if len(exclude) == 1:  # one pattern as a string, not its letters
        assert set(file_digests(tmp_path, exclude=exclude[0])) == expected


def test_file_digests_hashes_a_symlink_by_its_target_and_never_follows_it(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "secret.txt", "secret\n")
    root = tmp_path / "root"
    write(root / "plain", "x")
    (root / "link_out").symlink_to(outside)
    (root / "dir_link").symlink_to(outside.parent, target_is_directory=True)
    (root / "dangling").symlink_to("nowhere")
    digests = file_digests(root)
    assert set(digests) == {"plain", "link_out", "dir_link", "dangling"}  # nothing under dir_link
    assert digests["link_out"] != sha(b"secret\n")
    assert digests["dangling"] != sha(b"nowhere")  # a link to "x" is not a file holding "x"
    before = digests["link_out"]
    outside.write_text("changed\n")
    assert file_digests(root)["link_out"] == before  # the target's content is not read
    (root / "link_out").unlink()
    (root / "link_out").symlink_to(tmp_path / "elsewhere")
    assert file_digests(root)["link_out"] != before  # the target's text is


def test_file_digests_skips_fifos(tmp_path: Path) -> None:
    write(tmp_path / "a", "a")
    os.mkfifo(tmp_path / "fifo")
    assert list(file_digests(tmp_path)) == ["a"]


def refuse_to_open(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """os.open fails with EACCES for files called ``name`` (the tests may run as root)."""
    real_open = os.open

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.path.basename(os.fspath(path)) == name:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


def test_file_digests_names_a_file_it_cannot_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "ok", "x")
    write(tmp_path / "sub" / "secret.conf", "x")
    refuse_to_open(monkeypatch, "secret.conf")
    with pytest.raises(TemplateError, match=r"cannot read .*sub/secret\.conf: Permission denied"):
        file_digests(tmp_path)


def test_file_digests_names_a_directory_it_cannot_open(tmp_path: Path) -> None:
    # a directory that vanishes or cannot be listed: a missing root is the portable case
    with pytest.raises(TemplateError, match="missing"):
        file_digests(tmp_path / "missing")
    write(tmp_path / "file", "x")
    with pytest.raises(TemplateError, match="is not a directory"):
        file_digests(tmp_path / "file")


def test_file_digest_hashes_the_content_follows_a_symlink_unless_told_and_names_what_it_cannot_read(
    tmp_path: Path,
) -> None:
    target = write(tmp_path / "start", b"#!/bin/sh\n")
    (tmp_path / "link").symlink_to(target)
    assert file_digest(target) == file_digest(str(tmp_path / "link")) == sha(b"#!/bin/sh\n")
    with pytest.raises(TemplateError, match=r"cannot read .*/link: "):
        file_digest(tmp_path / "link", follow_symlinks=False)
    with pytest.raises(TemplateError, match=r"cannot read the extra file .*/gone: No such file"):
        file_digest(tmp_path / "gone", what="the extra file")
    with pytest.raises(TemplateError, match=rf"cannot read {tmp_path}: Is a dir"):
        file_digest(tmp_path)


def test_template_files_keys_the_roles_files_and_the_extra_ones(tmp_path: Path) -> None:
    role = role_tree(tmp_path / "role")
    extra = write(tmp_path / "scripts" / "hapool-start", "#!/bin/sh\n")
    files = template_files(str(role), [str(extra)])
    assert files == {
        **{f"role/{rel}": digest for rel, digest in file_digests(role).items()},
        "extra/hapool-start": sha(b"#!/bin/sh\n"),
    }
    with pytest.raises(TemplateError, match=rf"role_dir {tmp_path}/nope: {tmp_path}/nope is not a directory"):
        template_files(str(tmp_path / "nope"), [])
    twin = write(tmp_path / "other" / "hapool-start", "x")
    with pytest.raises(TemplateError, match=r"have the same basename 'hapool-start'"):
        template_files(str(role), [str(extra), str(twin)])


def test_the_walk_lists_each_directory_sorted_the_last_one_seen_first_and_never_enters_a_link(
    tmp_path: Path,
) -> None:
    for rel in ("b/y", "a/x", "c", "a/d/z", "skip/w"):
        write(tmp_path / rel, "v\n")
    (tmp_path / "e").symlink_to(tmp_path / "a", target_is_directory=True)
    walked = [rel for rel, _ in _walk(str(tmp_path), lambda rel, name: name == "skip")]
    assert walked == ["a", "b", "c", "e", "b/y", "a/d", "a/x", "a/d/z"]
    personalize_tree(tmp_path, tmp_path.parent / "copy", VALUES)
    assert (tmp_path.parent / "copy" / "e").is_symlink()


# --- template_version ---------------------------------------------------------------------------------

FILES = {"tasks/main.yml": sha(b"a"), "templates/nginx.conf.j2": sha(b"b")}
VARIABLES: dict[str, Any] = {
    "nginx_web_hostname": HOST,
    "nginx_web_port": 80,
    "nginx_web_gzip": True,
    "nginx_web_headers": {"X-A": "1", "X-B": "2"},
    "nginx_web_locations": [{"path": "/", "root": "html"}],
    "nginx_web_ratio": 0.5,
    "nginx_web_empty": None,
}
INPUTS = TemplateInputs(pool="web", provider="docker", base="sha256:1234", variables=VARIABLES, files=FILES)


def test_template_version_is_12_hex_and_stable() -> None:
    version = template_version(INPUTS)
    assert len(version) == 12
    assert int(version, 16) >= 0
    assert version == version.lower()
    copy = TemplateInputs(
        pool="web",
        provider="docker",
        base="sha256:1234",
        variables=json.loads(json.dumps(VARIABLES)),
        files=dict(FILES),
    )
    assert template_version(copy) == version


def test_template_version_does_not_depend_on_mapping_order() -> None:
    reordered = replace(
        INPUTS,
        variables={
            key: ({"X-B": "2", "X-A": "1"} if key == "nginx_web_headers" else value)
            for key, value in reversed(VARIABLES.items())
        },
        files=dict(reversed(FILES.items())),
    )
    assert template_version(reordered) == template_version(INPUTS)


def test_template_version_a_tuple_is_a_list() -> None:
    locations = ({"path": "/", "root": "html"},)
    as_tuple = replace(INPUTS, variables={**VARIABLES, "nginx_web_locations": locations})
    assert template_version(as_tuple) == template_version(INPUTS)


@pytest.mark.parametrize(
    "changes",
    [
        {"pool": "api"},
        {"provider": "local"},
        {"base": "sha256:1235"},
        {"variables": {**VARIABLES, "nginx_web_port": 81}},
        {"variables": {**VARIABLES, "nginx_web_port": "80"}},  # a string is not a number
        {"variables": {**VARIABLES, "nginx_web_gzip": 1}},  # nor is a number a boolean
        {"variables": {**VARIABLES, "nginx_web_headers": {"X-A": "1"}}},
        {"variables": {**VARIABLES, "nginx_web_new": ""}},
        {"variables": {k: v for k, v in VARIABLES.items() if k != "nginx_web_empty"}},  # None counts
        {"variables": {**VARIABLES, "nginx_web_locations": [{"path": "/", "root": "html"}] * 2}},
        {"files": {**FILES, "tasks/main.yml": sha(b"a2")}},  # a file's content
        {"files": {"tasks/other.yml": sha(b"a"), "templates/nginx.conf.j2": sha(b"b")}},  # its name
        {"files": {**FILES, "files/new": sha(b"")}},  # a new file
        {"files": {"tasks/main.yml": sha(b"a")}},  # a file gone
    ],
)
def test_template_version_changes_with_every_input(changes: dict[str, Any]) -> None:
    assert template_version(replace(INPUTS, **changes)) != template_version(INPUTS)


def test_template_version_of_a_real_tree_changes_with_a_file(tmp_path: Path) -> None:
    root = role_tree(tmp_path / "role")
    first = template_version(replace(INPUTS, files=file_digests(root)))
    write(root / "README.md", "regenerated\n")  # excluded: same version
    assert template_version(replace(INPUTS, files=file_digests(root))) == first
    write(root / "tasks" / "main.yml", "- name: y\n")
    assert template_version(replace(INPUTS, files=file_digests(root))) != first


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"nginx_web_set": {1, 2}}, "nginx_web_set"),
        ({"nginx_web_bytes": b"x"}, "nginx_web_bytes"),
        ({"nginx_web_nan": float("nan")}, "nginx_web_nan"),
        ({"nginx_web_inf": float("inf")}, "nginx_web_inf"),
        ({"nginx_web_deep": {"a": [1, {"b": object()}]}}, r"nginx_web_deep\.a\[1\]\.b"),
        ({"nginx_web_keys": {1: "x"}}, "nginx_web_keys"),
        ({3: "x"}, "3"),
    ],
)
def test_template_version_names_a_variable_that_is_not_json(variables: dict[Any, Any], named: str) -> None:
    with pytest.raises(TemplateError, match=named):
        template_version(replace(INPUTS, variables=variables))


def test_template_version_refuses_a_cycle_and_bad_files() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TemplateError, match="nginx_web_loop"):
        template_version(replace(INPUTS, variables={"nginx_web_loop": loop}))
    with pytest.raises(TemplateError, match="not a sha256"):
        template_version(replace(INPUTS, files={"a": "abc"}))
    with pytest.raises(TemplateError, match="base"):
        template_version(replace(INPUTS, base=None))  # type: ignore[arg-type]


# --- personalize --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("no placeholder", "no placeholder"),
        ("server_name @@HAPOOL_HOST@@;", "server_name web-3f9a2c;"),
        (
            "listen @@HAPOOL_ADDRESS@@:@@HAPOOL_PORT@@; # @@HAPOOL_POOL@@/@@HAPOOL_HOST@@ @@HAPOOL_HOST@@",
            "listen 127.0.0.1:8081; # web/web-3f9a2c web-3f9a2c",
        ),
        ("@@HAPOOL_HOST@@@@HAPOOL_POOL@@", "web-3f9a2cweb"),
        ("@@HAPOOL_host@@ @@OTHER@@ @HAPOOL_HOST@", "@@HAPOOL_host@@ @@OTHER@@ @HAPOOL_HOST@"),  # not ours
    ],
)
def test_personalize(text: str, expected: str) -> None:
    assert personalize(text, VALUES) == expected


def test_personalize_takes_values_literally_and_once() -> None:
    assert personalize("@@HAPOOL_HOST@@", {HOST: r"a\1\g<0>$&"}) == r"a\1\g<0>$&"
    assert personalize("@@HAPOOL_HOST@@", {HOST: "@@HAPOOL"}) == "@@HAPOOL"  # no full mark
    assert personalize("@@HAPOOL_EXTRA_1@@", {"@@HAPOOL_EXTRA_1@@": "x"}) == "x"  # any placeholder


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("@@HAPOOL_HOST@@ @@HAPOOL_PORT@@", {HOST: "h"}, "@@HAPOOL_PORT@@"),
        ("@@HAPOOL_ZONE@@ @@HAPOOL_ABC@@", VALUES, "@@HAPOOL_ABC@@, @@HAPOOL_ZONE@@"),
        ("x", {HOST: 1}, "must be a string"),
        ("x", {HOST: None}, "must be a string"),
        ("x", {"HOST": "h"}, "not a placeholder"),
        ("x", {"@@hapool_host@@": "h"}, "not a placeholder"),
        ("x", {HOST: "@@HAPOOL_POOL@@"}, "may not bring in a placeholder"),
        ("x", {HOST: "a@@HAPOOL_"}, "may not bring in a placeholder"),
    ],
)
def test_personalize_refuses(text: str, values: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        personalize(text, values)


# --- personalize_tree ---------------------------------------------------------------------------------


def baked_tree(root: Path) -> Path:
    write(root / "conf" / "nginx.conf", "server_name @@HAPOOL_HOST@@;\nlisten @@HAPOOL_PORT@@;\n", 0o640)
    write(root / "conf" / "mime.types", "types { text/html html; }\n", 0o644)
    write(root / "html" / "index.html", "<h1>@@HAPOOL_HOST@@ of @@HAPOOL_POOL@@</h1>\n")
    write(root / "sbin" / "start", "#!/bin/sh\necho @@HAPOOL_HOST@@\n", 0o755)
    write(root / "bin.dat", b"\xff\xfe@@HAPOOL_HOST@@\x00")  # not UTF-8
    write(root / "nul.dat", b"@@HAPOOL_HOST@@\x00")  # UTF-8, but a NUL: binary
    write(root / "big.txt", "@@HAPOOL_HOST@@" + "x" * 100)
    (root / "logs").mkdir()
    (root / "html" / "current").symlink_to("index.html")
    (root / "abs").symlink_to("/etc/@@HAPOOL_HOST@@")
    (root / "private").mkdir(mode=0o700)
    (root / "private").chmod(0o700)
    return root


def test_personalize_tree_substitutes_text_and_keeps_everything_else(tmp_path: Path) -> None:
    src = baked_tree(tmp_path / "baked")
    dest = tmp_path / "hosts" / "web-3f9a2c"  # its parent is created too
    changed = personalize_tree(src, dest, VALUES, max_bytes=64)
    assert changed == ["conf/nginx.conf", "html/index.html", "sbin/start"]
    assert (dest / "conf" / "nginx.conf").read_text() == "server_name web-3f9a2c;\nlisten 8081;\n"
    assert (dest / "html" / "index.html").read_text() == "<h1>web-3f9a2c of web</h1>\n"
    for rel in ("conf/mime.types", "bin.dat", "nul.dat", "big.txt"):  # byte for byte
        assert (dest / rel).read_bytes() == (src / rel).read_bytes(), rel
    for rel in ("conf/nginx.conf", "conf/mime.types", "sbin/start", "private", "logs", "html"):
        assert stat.S_IMODE((dest / rel).stat().st_mode) == stat.S_IMODE((src / rel).stat().st_mode), rel
    assert stat.S_IMODE((dest / "sbin" / "start").stat().st_mode) == 0o755
    assert (dest / "logs").is_dir()
    assert (dest / "html" / "current").is_symlink()
    assert os.readlink(dest / "html" / "current") == "index.html"
    assert os.readlink(dest / "abs") == "/etc/@@HAPOOL_HOST@@"  # a link's text is not content
    assert (src / "conf" / "nginx.conf").read_text().startswith("server_name @@HAPOOL_HOST@@")  # untouched


def test_personalize_tree_keeps_a_read_only_directory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "ro" / "f.txt", "@@HAPOOL_POOL@@")
    (src / "ro").chmod(0o555)
    dest = tmp_path / "dest"
    try:
        personalize_tree(src, dest, VALUES)
        assert (dest / "ro" / "f.txt").read_text() == "web"
        assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
    finally:
        (src / "ro").chmod(0o755)
        if (dest / "ro").exists():
            (dest / "ro").chmod(0o755)


def test_personalize_tree_refuses_an_existing_dest(tmp_path: Path) -> None:
    src = baked_tree(tmp_path / "baked")
    dest = tmp_path / "dest"
    dest.mkdir()
    write(dest / "keep", "mine")
    with pytest.raises(TemplateError, match="already exists"):
        personalize_tree(src, dest, VALUES)
    assert (dest / "keep").read_text() == "mine"  # not ours: left alone
    (tmp_path / "link").symlink_to("nowhere")
    with pytest.raises(TemplateError, match="already exists"):
        personalize_tree(src, tmp_path / "link", VALUES)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({HOST: "h"}, r"(conf/nginx\.conf|html/index\.html): no value for the placeholder\(s\) @@HAPOOL_"),
        ({**VALUES, HOST: 7}, "must be a string"),
        ({**VALUES, HOST: "@@HAPOOL_HOST@@"}, "may not bring in"),
    ],
)
def test_personalize_tree_failure_leaves_no_dest(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    src = baked_tree(tmp_path / "baked")
    dest = tmp_path / "dest"
    with pytest.raises(TemplateError, match=message):
        personalize_tree(src, dest, values)
    assert not os.path.lexists(dest)


def test_personalize_tree_failure_removes_a_partial_dest_with_read_only_dirs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a_ro" / "ok.txt", "fine")
    write(src / "z_bad.txt", "@@HAPOOL_UNKNOWN@@")
    (src / "a_ro").chmod(0o500)
    dest = tmp_path / "dest"
    try:
        with pytest.raises(TemplateError, match="@@HAPOOL_UNKNOWN@@"):
            personalize_tree(src, dest, VALUES)
        assert not os.path.lexists(dest)
    finally:
        (src / "a_ro").chmod(0o755)


def test_personalize_tree_an_unreadable_file_leaves_no_dest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = baked_tree(tmp_path / "baked")
    dest = tmp_path / "dest"
    refuse_to_open(monkeypatch, "start")
    with pytest.raises(TemplateError, match=r"sbin/start: Permission denied"):
        personalize_tree(src, dest, VALUES)
    assert not os.path.lexists(dest)


def test_personalize_tree_refuses_bad_trees(tmp_path: Path) -> None:
    src = baked_tree(tmp_path / "baked")
    with pytest.raises(TemplateError, match="not a directory"):
        personalize_tree(tmp_path / "missing", tmp_path / "dest", VALUES)
    with pytest.raises(TemplateError, match="inside the template tree"):
        personalize_tree(src, src / "copy", VALUES)
    assert not (src / "copy").exists()
    with pytest.raises(TemplateError, match="max_bytes"):
        personalize_tree(src, tmp_path / "dest", VALUES, max_bytes=-1)
    assert not (tmp_path / "dest").exists()


def test_personalize_tree_skips_fifos(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.txt", "@@HAPOOL_HOST@@")
    os.mkfifo(src / "fifo")
    personalize_tree(src, tmp_path / "dest", VALUES)
    assert sorted(os.listdir(tmp_path / "dest")) == ["a.txt"]


# --- templatize ---------------------------------------------------------------------------------------

BAKE = "/tmp/hapool-bake/web/3f9a2c0b1d4e"  # the concrete values a bake renders with
BAKE_VALUES = {PREFIX: BAKE, ADDRESS: "127.0.0.1", PORT: "39123", HOST: "bake-host", POOL: "web"}
BAKE_R = {value: placeholder for placeholder, value in BAKE_VALUES.items()}


@pytest.mark.parametrize(
    ("text", "replacements", "expected"),
    [
        ("", BAKE_R, ""),
        ("nothing to do", BAKE_R, "nothing to do"),
        (f"pid {BAKE}/logs/nginx.pid;", BAKE_R, "pid @@HAPOOL_PREFIX@@/logs/nginx.pid;"),
        ("listen 127.0.0.1:39123;", BAKE_R, "listen @@HAPOOL_ADDRESS@@:@@HAPOOL_PORT@@;"),
        # longest first: the key that contains another wins where both match
        ("web-1 web", {"web": POOL, "web-1": HOST}, "@@HAPOOL_HOST@@ @@HAPOOL_POOL@@"),
        ("/srv/a/b /srv/a", {"/srv/a": PREFIX, "/srv/a/b": HOST}, "@@HAPOOL_HOST@@ @@HAPOOL_PREFIX@@"),
        # one pass: a placeholder put in is never replaced again, even by a key it contains
        ("x", {"x": HOST, "HOST": POOL, "@@": PORT}, "@@HAPOOL_HOST@@"),
        ("aaa", {"aa": HOST}, "@@HAPOOL_HOST@@a"),  # non-overlapping, left to right
        # regex metacharacters are literal
        (
            r"a.b a+b \1 $&",
            {"a.b": HOST, r"\1": PORT, "$&": POOL},
            "@@HAPOOL_HOST@@ a+b @@HAPOOL_PORT@@ @@HAPOOL_POOL@@",
        ),
        # two keys may share a placeholder
        (
            "127.0.0.1 localhost",
            {"127.0.0.1": ADDRESS, "localhost": ADDRESS},
            "@@HAPOOL_ADDRESS@@ @@HAPOOL_ADDRESS@@",
        ),
        # a placeholder already there is kept when it is one of the values
        ("@@HAPOOL_HOST@@ on 39123", {"39123": PORT, "h": HOST}, "@@HAPOOL_HOST@@ on @@HAPOOL_PORT@@"),
        ("@@HAPOOL_host@@ @HAPOOL_HOST@", {}, "@@HAPOOL_host@@ @HAPOOL_HOST@"),  # not placeholders
        ("unicode é ✓ web", {"é ✓": HOST}, "unicode @@HAPOOL_HOST@@ web"),
    ],
)
def test_templatize(text: str, replacements: dict[str, str], expected: str) -> None:
    assert templatize(text, replacements) == expected


@pytest.mark.parametrize(
    ("text", "replacements", "message"),
    [
        ("x", {"": HOST}, "non-empty string"),
        ("x", {1: HOST}, "non-empty string"),
        ("x", {"@@HAPOOL_HOST@@": POOL}, "contains '@@HAPOOL_'"),
        ("x", {"a@@HAPOOL_": POOL}, "contains '@@HAPOOL_'"),
        ("x", {"web": "HOST"}, "must be replaced by a placeholder"),
        ("x", {"web": "@@hapool_host@@"}, "must be replaced by a placeholder"),
        ("x", {"web": "@@HAPOOL_HOST@@ "}, "must be replaced by a placeholder"),
        ("x", {"web": None}, "must be replaced by a placeholder"),
        ("@@HAPOOL_ZONE@@ @@HAPOOL_A@@ web", {"web": POOL}, "@@HAPOOL_A@@, @@HAPOOL_ZONE@@, which no string"),
        ("@@HAPOOL_HOST@@", {}, "already holds the placeholder"),
        # a key that cuts into a placeholder the text holds
        ("@@HAPOOL_HOST@@", {"HOST@@": PORT, "h": HOST}, "overlaps the placeholder @@HAPOOL_HOST@@"),
        ("x@@HAPOOL_HOST@@", {"x@@": PORT, "h": HOST}, "overlaps the placeholder"),
        # a placeholder put next to "@@HAPOOL_A" would read as "@@HAPOOL_A@@"
        ("@@HAPOOL_Ak@@", {"k": HOST}, "read differently around @@HAPOOL_A@@"),
    ],
)
def test_templatize_refuses(text: str, replacements: dict[Any, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        templatize(text, replacements)


def test_templatize_refuses_a_text_that_is_not_a_str() -> None:
    with pytest.raises(TemplateError, match="not a bytes"):
        templatize(b"x", {})  # type: ignore[arg-type]


def bake_tree(root: Path) -> Path:
    """What a bake renders: concrete values that nginx -t accepts, and things left alone."""
    nginx_conf = f"pid {BAKE}/run/nginx.pid;\nerror_log {BAKE}/logs/error.log;\n"
    write(root / "conf" / "nginx.conf", nginx_conf, 0o640)
    write(root / "conf" / "site.conf", "server { listen 127.0.0.1:39123; server_name bake-host; }\n", 0o600)
    write(root / "conf" / "mime.types", "types { text/html html; }\n", 0o644)
    write(root / "html" / "index.html", "<h1>bake-host of web</h1>\r\n")  # CRLF kept
    write(root / "sbin" / "start", f"#!/bin/sh\nexec nginx -p {BAKE}\n", 0o755)
    write(root / "bin.dat", b"\xff\xfe" + BAKE.encode())  # not UTF-8: left alone
    write(root / "nul.dat", BAKE.encode() + b"\0")  # a NUL: binary, left alone
    write(root / "big.txt", BAKE + "x" * 200)  # over max_bytes: left alone
    (root / "logs").mkdir()
    (root / "html" / "current").symlink_to("index.html")
    (root / "abs").symlink_to("/etc/nginx")
    return root


def test_templatize_tree_then_personalize_tree_gives_a_host_its_own_values(tmp_path: Path) -> None:
    root = bake_tree(tmp_path / "bake")
    before = {rel: (root / rel).read_bytes() for rel in ("bin.dat", "nul.dat", "big.txt", "conf/mime.types")}
    modes = {p.relative_to(root): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}
    changed = templatize_tree(root, BAKE_R, max_bytes=128)
    assert changed == ["conf/nginx.conf", "conf/site.conf", "html/index.html", "sbin/start"]
    assert (root / "conf" / "nginx.conf").read_text() == (
        "pid @@HAPOOL_PREFIX@@/run/nginx.pid;\nerror_log @@HAPOOL_PREFIX@@/logs/error.log;\n"
    )
    assert (root / "conf" / "site.conf").read_text() == (
        "server { listen @@HAPOOL_ADDRESS@@:@@HAPOOL_PORT@@; server_name @@HAPOOL_HOST@@; }\n"
    )
    assert (root / "html" / "index.html").read_bytes() == b"<h1>@@HAPOOL_HOST@@ of @@HAPOOL_POOL@@</h1>\r\n"
    assert {rel: (root / rel).read_bytes() for rel in before} == before
    assert {p.relative_to(root): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")} == modes
    assert os.readlink(root / "html" / "current") == "index.html"
    assert not [p for p in root.rglob(".*")]  # no temporary file left
    assert templatize_tree(root, BAKE_R, max_bytes=128) == []  # a second pass has nothing to do

    host = {
        PREFIX: "/srv/hosts/web-3f9a2c",
        ADDRESS: "127.0.0.2",
        PORT: "8081",
        HOST: "web-3f9a2c",
        POOL: "web",
    }
    dest = tmp_path / "hosts" / "web-3f9a2c"
    personalize_tree(root, dest, host, max_bytes=128)
    assert (dest / "conf" / "site.conf").read_text() == (
        "server { listen 127.0.0.2:8081; server_name web-3f9a2c; }\n"
    )
    assert (dest / "sbin" / "start").read_text() == "#!/bin/sh\nexec nginx -p /srv/hosts/web-3f9a2c\n"
    # and with the bake's own values, the bake comes back byte for byte
    again = tmp_path / "again"
    personalize_tree(root, again, BAKE_VALUES, max_bytes=128)
    original = bake_tree(tmp_path / "original")
    assert tree_snapshot(again) == tree_snapshot(original)


def tree_snapshot(root: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every entry under ``root``: its kind, content (a link's target) and mode."""
    snapshot: dict[str, tuple[str, bytes | str, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            snapshot[rel] = ("link", os.readlink(path), 0)
        elif path.is_dir():
            snapshot[rel] = ("dir", b"", mode)
        else:
            snapshot[rel] = ("file", path.read_bytes(), mode)
    return snapshot


@pytest.mark.parametrize(
    ("files", "replacements"),
    [
        ({"a.conf": "listen 127.0.0.1:39123;"}, BAKE_R),
        ({"a": "web-1 web web-12", "b/c/d": "web-12web-1web"}, {"web": POOL, "web-1": HOST, "web-12": PORT}),
        ({"x": "\n".join(["/b/d /b /b/d/e"] * 50)}, {"/b": PREFIX, "/b/d": HOST, "/b/d/e": PORT}),
        ({"empty": "", "same": "aaaa", "sub/other": "ba ab"}, {"a": HOST, "aa": POOL}),
    ],
)
def test_templatize_tree_round_trips_hand_made_trees(
    tmp_path: Path, files: dict[str, str], replacements: dict[str, str]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for rel, text in files.items():
        write(root / rel, text)
    original = tree_snapshot(root)
    templatize_tree(root, replacements)
    values = {placeholder: key for key, placeholder in replacements.items()}
    dest = tmp_path / "dest"
    personalize_tree(root, dest, values)
    assert tree_snapshot(dest) == original


def test_templatize_tree_refuses_a_link_whose_target_holds_a_key_and_writes_nothing(tmp_path: Path) -> None:
    root = bake_tree(tmp_path / "bake")
    (root / "logs" / "current").symlink_to(f"{BAKE}/logs/error.log")
    original = tree_snapshot(root)
    message = r"logs/current: the symlink's target .* is not personalized at launch"
    with pytest.raises(TemplateError, match=message):
        templatize_tree(root, BAKE_R)
    assert tree_snapshot(root) == original  # the files checked before the link were not written


def test_templatize_tree_names_the_file_it_refuses_and_writes_nothing(tmp_path: Path) -> None:
    root = bake_tree(tmp_path / "bake")
    write(root / "zz" / "stale.conf", "@@HAPOOL_OLD@@\n")
    original = tree_snapshot(root)
    with pytest.raises(TemplateError, match=r"cannot templatize .*: zz/stale\.conf: .*@@HAPOOL_OLD@@"):
        templatize_tree(root, BAKE_R)
    assert tree_snapshot(root) == original


@pytest.mark.parametrize(
    ("replacements", "max_bytes", "message"),
    [
        ({"": HOST}, 1 << 20, "non-empty string"),
        ({"x@@HAPOOL_": HOST}, 1 << 20, "contains '@@HAPOOL_'"),
        ({"web": "web"}, 1 << 20, "must be replaced by a placeholder"),
        (BAKE_R, -1, "max_bytes"),
        (BAKE_R, True, "max_bytes"),
        (BAKE_R, 1.5, "max_bytes"),
    ],
)
def test_templatize_tree_refuses_bad_arguments(
    tmp_path: Path, replacements: dict[str, Any], max_bytes: Any, message: str
) -> None:
    root = bake_tree(tmp_path / "bake")
    original = tree_snapshot(root)
    with pytest.raises(TemplateError, match=message):
        templatize_tree(root, replacements, max_bytes=max_bytes)
    assert tree_snapshot(root) == original


def test_templatize_tree_refuses_what_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not a directory"):
        templatize_tree(tmp_path / "missing", BAKE_R)
    write(tmp_path / "file", BAKE)
    with pytest.raises(TemplateError, match="not a directory"):
        templatize_tree(tmp_path / "file", BAKE_R)
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    with pytest.raises(TemplateError, match="a symlink is not followed"):
        templatize_tree(tmp_path / "link", BAKE_R)


def test_templatize_tree_does_not_follow_symlinks_and_skips_fifos(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "f.conf", BAKE)
    root = tmp_path / "root"
    write(root / "a.conf", BAKE)
    (root / "link_file").symlink_to(outside)
    (root / "link_dir").symlink_to(outside.parent, target_is_directory=True)
    os.mkfifo(root / "fifo")
    assert templatize_tree(root, BAKE_R) == ["a.conf"]
    assert outside.read_text() == BAKE  # not reached through a link


def test_templatize_tree_names_a_file_it_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = bake_tree(tmp_path / "bake")
    refuse_to_open(monkeypatch, "start")
    with pytest.raises(TemplateError, match=r"sbin/start: Permission denied"):
        templatize_tree(root, BAKE_R)


def test_templatize_tree_names_a_file_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = bake_tree(tmp_path / "bake")
    real_replace = os.replace

    def fail_replace(src: Any, dst: Any) -> None:
        if os.path.basename(os.fspath(dst)) == "site.conf":
            raise PermissionError(13, "Permission denied", os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(TemplateError, match=r"conf/site\.conf: Permission denied"):
        templatize_tree(root, BAKE_R)
    assert not [p for p in root.rglob(".site.conf.*")]  # atomic_write removed its temporary file


# --- the round trip, by hypothesis --------------------------------------------------------------------

round_trip = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NAMES = st.sampled_from([HOST, POOL, ADDRESS, PORT, PREFIX, "@@HAPOOL_EXTRA_1@@"])
# concrete values, and texts made of them and of anything else; neither alphabet can spell
# "@@HAPOOL_", which a rendered tree does not hold
VALUE = st.text(alphabet="abw-1./:@ é", min_size=1, max_size=8)
HOST_VALUES = st.dictionaries(NAMES, VALUE, min_size=1, max_size=5)
FILLER = st.text(alphabet="abcw-1./:@ \n\r\t{};é✓", max_size=12)
MARKS = ["@@HAPOOL_", "@@HAPOOL_A", "@@", "A", "_", "@@HAPOOL_HOST@@"]
APART_VALUE = st.text(alphabet="abc0123.-/", min_size=1, max_size=6)
REL = st.sampled_from(["a", "b.conf", "conf/nginx.conf", "conf/sub/x", "html/index.html"])


@st.composite
def concrete_trees(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, str]]:
    values = draw(HOST_VALUES)
    pieces = st.one_of(FILLER, st.sampled_from(sorted(values.values())))
    files = draw(st.dictionaries(REL, st.lists(pieces, max_size=12).map("".join), max_size=5))
    return files, values


def fresh(tmp_path: Path, name: str) -> Path:
    """A new directory per example (hypothesis reuses tmp_path)."""
    number = len(list(tmp_path.iterdir()))
    return tmp_path / f"{name}-{number}"


@round_trip
@given(example=concrete_trees())
def test_templatize_tree_then_personalize_tree_reproduces_the_tree(
    tmp_path: Path, example: tuple[dict[str, str], dict[str, str]]
) -> None:
    files, values = example
    root = fresh(tmp_path, "tree")
    root.mkdir()
    for rel, text in files.items():
        if (root / rel).exists() or any((root / parent).is_file() for parent in Path(rel).parents):
            continue
        write(root / rel, text)
    original = tree_snapshot(root)
    replacements = {value: placeholder for placeholder, value in values.items()}
    changed = templatize_tree(root, replacements)
    assert changed == sorted(
        rel for rel, (_, data, _) in original.items() if any(key.encode() in data for key in replacements)
    )
    for rel in changed:  # every value became a placeholder: none is left between them
        rest = PLACEHOLDER_RE.sub("\0", (root / rel).read_text(encoding="utf-8"))
        assert not [key for key in replacements if key in rest], rel
    dest = fresh(tmp_path, "dest")
    personalize_tree(root, dest, values)
    assert tree_snapshot(dest) == original


@settings(max_examples=400, deadline=None)
@given(
    values=st.dictionaries(NAMES, st.text(alphabet="a@A_ ", min_size=1, max_size=3), min_size=1, max_size=3),
    text=st.lists(st.one_of(st.text(alphabet="a@A_ ", max_size=3), st.sampled_from(MARKS)), max_size=10).map(
        "".join
    ),
)
def test_templatize_refuses_or_round_trips_near_placeholder_marks(values: dict[str, str], text: str) -> None:
    replacements = {value: placeholder for placeholder, value in values.items()}
    try:
        result = templatize(text, replacements)
    except TemplateError:
        return
    # what personalize does with the text, it does with the templatized text
    try:
        expected = personalize(text, values)
    except TemplateError:
        with pytest.raises(TemplateError):
            personalize(result, values)
        return
    assert personalize(result, values) == expected


@round_trip
@given(
    values=st.dictionaries(NAMES, APART_VALUE, min_size=1, max_size=5).filter(
        lambda values: len(set(values.values())) == len(values)
    ),
    layout=st.lists(st.tuples(st.text(alphabet="xyz {};\n", min_size=1, max_size=5), NAMES), max_size=8),
)
def test_personalize_then_templatize_gives_the_template_back(
    values: dict[str, str], layout: list[tuple[str, str]]
) -> None:
    """The other direction: a template whose placeholders stand apart (filler in between, made of
    characters no value uses) and distinct values comes back from a personalized copy."""
    template = "".join(f"{filler}{name}" for filler, name in layout if name in values) + "x"
    personalized = personalize(template, values)
    assert templatize(personalized, {value: name for name, value in values.items()}) == template


# --- the index ------------------------------------------------------------------------------------------


def rec(version: str, baked_at: float, usable: bool = True, reason: str = "") -> TemplateVersion:
    return TemplateVersion(version, f"hapool/web:{version}", baked_at, usable, reason)


INDEX = TemplateIndex("web", V2, (rec(V1, 10.0), rec(V2, 20.0), rec(V3, 30.0, False, "health check 502")))


def test_index_round_trips_through_a_dict_and_a_file(tmp_path: Path) -> None:
    assert TemplateIndex.from_dict(INDEX.to_dict()) == INDEX
    assert TemplateIndex.from_dict(json.loads(json.dumps(INDEX.to_dict()))) == INDEX
    path = index_path(tmp_path / "state", "web")
    assert path == str(tmp_path / "state" / "templates" / "web" / "index.json")
    write_index(path, INDEX)
    assert read_index(path, "web") == INDEX
    data = json.loads(Path(path).read_text())
    assert data["schema"] == 1
    assert data["current"] == V2
    assert data["versions"][2] == {
        "version": V3,
        "artifact": f"hapool/web:{V3}",
        "baked_at": 30.0,
        "usable": False,
        "reason": "health check 502",
    }
    assert not [name for name in os.listdir(Path(path).parent) if name != "index.json"]  # no temp left


def test_read_index_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_index(tmp_path / "none" / "index.json", "web") == TemplateIndex("web", None, ())


def test_index_path_and_read_index_validate_the_pool(tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError):
        index_path(tmp_path, "../etc")
    with pytest.raises(InvalidNameError):
        read_index(tmp_path / "index.json", "Web!")


def good() -> dict[str, Any]:
    return INDEX.to_dict()


def with_record(number: int, **changes: Any) -> dict[str, Any]:
    data = good()
    data["versions"][number].update(changes)
    return data


def without(key: str, record: int | None = None) -> dict[str, Any]:
    data = good()
    del (data if record is None else data["versions"][record])[key]
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be an object"),
        ({**good(), "schema": 2}, "schema 2"),
        (without("schema"), "schema None"),
        (without("pool"), "pool None"),
        ({**good(), "pool": "Web"}, "invalid pool name"),
        ({**good(), "current": 5}, "current 5"),
        ({**good(), "current": V4}, "not one of the recorded"),
        ({**good(), "current": V3}, "not usable"),
        (without("versions"), "versions None"),
        ({**good(), "versions": {}}, "is not a list"),
        ({**good(), "versions": [None]}, "record 1: a version record must be an object"),
        (with_record(0, version="A1"), "record 1: version 'A1'"),
        (with_record(1, version="../x"), "record 2: version"),
        (without("version", 0), "record 1: version None"),
        (with_record(0, artifact=""), "artifact"),
        (without("artifact", 0), "artifact None"),
        (with_record(0, baked_at="10"), "baked_at '10'"),
        (with_record(0, baked_at=True), "baked_at True"),
        (without("baked_at", 0), "baked_at None"),
        (with_record(0, usable="yes"), "usable 'yes'"),
        (without("usable", 0), "usable None"),
        (with_record(0, reason=None), "reason None"),
        (with_record(0, version=V2), f"{V2} is recorded twice"),
    ],
)
def test_from_dict_refuses_malformed_records(data: Any, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        TemplateIndex.from_dict(data)


def test_from_dict_tolerates_a_missing_reason_and_an_int_time() -> None:
    data = without("reason", 0)
    data["versions"][0]["baked_at"] = 10
    assert TemplateIndex.from_dict(data) == INDEX


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "cannot read"),
        (b"[]", "is corrupt: a template index must be an object"),
        (json.dumps({**INDEX.to_dict(), "current": V4}).encode(), "is corrupt"),
        (json.dumps({**INDEX.to_dict(), "pool": "api"}).encode(), "pool 'api'"),
    ],
)
def test_read_index_names_a_corrupt_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path / "index.json", content)
    with pytest.raises(TemplateError, match=message) as caught:
        read_index(path, "web")
    assert str(path) in str(caught.value)


def test_read_index_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "index.json").mkdir()
    with pytest.raises(TemplateError, match=r"cannot read the template index .*index\.json"):
        read_index(tmp_path / "index.json", "web")


def test_write_index_refuses_an_invalid_index_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    write_index(path, INDEX)
    with pytest.raises(TemplateError, match="refusing to write"):
        write_index(path, replace(INDEX, current=V3))
    assert read_index(path, "web") == INDEX
    blocked = tmp_path / "file"
    write(blocked, "x")
    with pytest.raises(TemplateError, match="cannot write"):
        write_index(blocked / "index.json", INDEX)


# --- decisions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [(V1, "reuse"), (V2, "reuse"), (V3, "bake"), (V4, "bake")],
)
def test_plan_bake(version: str, expected: str) -> None:
    assert plan_bake(INDEX, version) == expected
    assert plan_bake(TemplateIndex("web"), version) == "bake"


def test_record_bake_a_usable_bake_becomes_current() -> None:
    index = record_bake(TemplateIndex("web"), V1, "hapool/web:" + V1, 100.0, usable=True)
    assert index == TemplateIndex("web", V1, (rec(V1, 100.0),))
    index = record_bake(index, V2, "hapool/web:" + V2, 200.0, usable=True)
    assert index.current == V2
    assert [r.version for r in index.versions] == [V1, V2]


def test_record_bake_a_failed_bake_keeps_current() -> None:
    index = record_bake(INDEX, V4, "hapool/web:" + V4, 40.0, usable=False, reason="nginx -t failed")
    assert index.current == V2
    assert index.get(V4) == rec(V4, 40.0, False, "nginx -t failed")
    first = record_bake(TemplateIndex("web"), V1, "a", 1.0, usable=False, reason="x")
    assert first.current is None
    assert plan_bake(first, V1) == "bake"


def test_record_bake_a_good_rebake_replaces_the_failed_record() -> None:
    index = record_bake(INDEX, V3, "hapool/web:" + V3, 50.0, usable=True)
    assert index.current == V3
    assert [r.version for r in index.versions] == [V1, V2, V3]
    assert index.get(V3) == rec(V3, 50.0)
    assert plan_bake(index, V3) == "reuse"
    assert INDEX.current == V2  # frozen: the old index is unchanged


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((V2, "x", 60.0, False, "late failure"), "already recorded usable"),
        (("v1", "x", 60.0, True, ""), "lowercase hex"),
        ((V4, "", 60.0, True, ""), "artifact"),
        ((V4, "x", float("nan"), True, ""), "baked_at"),
    ],
)
def test_record_bake_refuses(args: tuple[str, str, float, bool, str], message: str) -> None:
    version, artifact, now, usable, reason = args
    with pytest.raises(TemplateError, match=message):
        record_bake(INDEX, version, artifact, now, usable=usable, reason=reason)


GC_INDEX = TemplateIndex(
    "web",
    V4,
    (
        rec(V1, 10.0),
        rec(V2, 20.0, False, "bad"),
        rec(V3, 30.0),
        rec(V5, 35.0, False, "bad"),
        rec(V4, 40.0),
    ),
)


@pytest.mark.parametrize(
    ("index", "in_use", "keep", "deleted"),
    [
        (TemplateIndex("web"), set(), 2, []),
        (GC_INDEX, set(), 2, [V1, V2]),  # V3 is the previous; V5 failed after it: kept
        (GC_INDEX, set(), 1, [V1, V2, V3, V5]),  # only the current: V5 failed before it
        (GC_INDEX, set(), 3, []),  # V1 is kept: only failures older than V1 would go
        (GC_INDEX, set(), 10, []),
        (GC_INDEX, {V1}, 2, [V2]),  # a live host runs V1
        (GC_INDEX, {V1, V2, V3}, 1, [V5]),
        (GC_INDEX, {"000000000000"}, 2, [V1, V2]),  # an unknown version in use changes nothing
        # current is kept even when it is not the newest usable (a rollback)
        (replace(GC_INDEX, current=V1), set(), 2, [V3]),
        # no current: the `keep` newest usable ones are kept (V4, V3, and V5 failed after V3)
        (replace(GC_INDEX, current=None), set(), 2, [V1, V2]),
        # only failures: the most recent one stays
        (
            TemplateIndex("web", None, (rec(V1, 1.0, False), rec(V2, 3.0, False), rec(V3, 2.0, False))),
            set(),
            2,
            [V1, V3],
        ),
    ],
)
def test_plan_gc(index: TemplateIndex, in_use: set[str], keep: int, deleted: list[str]) -> None:
    plan = plan_gc(index, in_use, keep)
    assert [r.version for r in plan] == deleted
    assert index.current not in {r.version for r in plan}
    assert not in_use & {r.version for r in plan}
    assert [r.baked_at for r in plan] == sorted(r.baked_at for r in plan)  # oldest first


def test_plan_gc_never_deletes_current_or_in_use_whatever_the_history() -> None:
    records = tuple(rec(f"{n:012x}", float(n % 7), n % 3 != 0) for n in range(1, 30))
    for current in (None, *[r.version for r in records if r.usable]):
        index = TemplateIndex("web", current, records)
        for keep in (1, 2, 5):
            for in_use in (set(), {records[0].version, records[5].version}):
                gone = {r.version for r in plan_gc(index, in_use, keep)}
                assert current not in gone
                assert not gone & in_use


@pytest.mark.parametrize("keep", [0, -1, True, 1.5])
def test_plan_gc_refuses_a_bad_keep(keep: Any) -> None:
    with pytest.raises(TemplateError, match="keep"):
        plan_gc(GC_INDEX, set(), keep)


def test_drop_versions_after_gc() -> None:
    plan = plan_gc(GC_INDEX, set(), 2)
    index = drop_versions(GC_INDEX, (r.version for r in plan))
    assert [r.version for r in index.versions] == [V3, V5, V4]
    assert index.current == V4
    assert plan_gc(index, set(), 2) == []
    with pytest.raises(TemplateError, match="current"):
        drop_versions(GC_INDEX, [V4])


@pytest.mark.parametrize(
    ("index", "hosts", "behind"),
    [
        (INDEX, {}, []),
        (INDEX, {"web-a": V2, "web-b": V2}, []),
        (INDEX, {"web-c": V1, "web-a": V2, "web-b": None}, ["web-b", "web-c"]),
        (INDEX, {"web-b": "unknown", "web-a": V3}, ["web-a", "web-b"]),
        (TemplateIndex("web"), {"web-a": None, "web-b": V1}, []),  # no current: nothing to be behind
    ],
)
def test_hosts_behind(index: TemplateIndex, hosts: dict[str, str | None], behind: list[str]) -> None:
    assert hosts_behind(index, hosts) == behind


# --- templatize(rendered=...): placeholders a bake renders on purpose ---------------------------------


@pytest.mark.parametrize(
    ("text", "replacements", "rendered", "expected"),
    [
        # the bake renders nginx_web_hostname as @@HAPOOL_HOST@@: it stays, the rest is templatized
        (
            f"server_name {HOST}; listen 127.0.0.1:39123; root {BAKE}/html;",
            BAKE_R,
            {HOST},
            f"server_name {HOST}; listen {ADDRESS}:{PORT}; root {PREFIX}/html;",
        ),
        (f"{HOST} {BAKE}", {BAKE: PREFIX}, [HOST], f"{HOST} {PREFIX}"),
        (f"{HOST}{POOL}", {}, (HOST, POOL), f"{HOST}{POOL}"),  # nothing to replace: as it was
        ("no placeholder", {"no": HOST}, frozenset({POOL}), "@@HAPOOL_HOST@@ placeholder"),
        (f"{HOST} bake-host", {"bake-host": HOST}, {HOST}, f"{HOST} {HOST}"),  # also a replacement's
        (
            f"@@HAPOOL_EXTRA_1@@ {BAKE}",
            {BAKE: PREFIX},
            {"@@HAPOOL_EXTRA_1@@"},
            f"@@HAPOOL_EXTRA_1@@ {PREFIX}",
        ),
    ],
)
def test_templatize_keeps_the_rendered_placeholders(
    text: str, replacements: dict[str, str], rendered: Any, expected: str
) -> None:
    assert templatize(text, replacements, rendered=rendered) == expected


@pytest.mark.parametrize(
    ("text", "replacements", "rendered", "message"),
    [
        (f"{HOST} {BAKE}", {BAKE: PREFIX}, (), "already holds the placeholder.*@@HAPOOL_HOST@@"),
        (
            f"{HOST} {POOL} {BAKE}",
            {BAKE: PREFIX},
            {HOST},
            r"already holds the placeholder\(s\) @@HAPOOL_POOL@@,",
        ),
        (f"{PORT}", {}, {HOST}, "already holds the placeholder.*@@HAPOOL_PORT@@"),
        # a rendered placeholder is still protected from a key that cuts into it
        (HOST, {"HOST@@": PORT}, {HOST}, "overlaps the placeholder @@HAPOOL_HOST@@"),
    ],
)
def test_templatize_refuses_placeholders_that_were_not_rendered(
    text: str, replacements: dict[str, str], rendered: Any, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        templatize(text, replacements, rendered=rendered)


BAD_RENDERED: list[tuple[Any, str]] = [
    (HOST, "not one string"),
    (["HOST"], r"rendered: 'HOST' is not a placeholder \(@@HAPOOL_NAME@@\)"),
    (["@@hapool_host@@"], "is not a placeholder"),
    ([f"{HOST} "], "is not a placeholder"),
    ([f"{HOST}{POOL}"], "is not a placeholder"),
    ([1], "rendered: 1 is not a placeholder"),
    ([None], "rendered: None is not a placeholder"),
]


@pytest.mark.parametrize(("rendered", "message"), BAD_RENDERED)
def test_templatize_refuses_bad_rendered_values(rendered: Any, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        templatize("plain text", {}, rendered=rendered)


def test_templatize_tree_keeps_the_rendered_placeholders(tmp_path: Path) -> None:
    root = bake_tree(tmp_path / "bake")
    write(root / "conf" / "site.conf", f"server {{ listen 127.0.0.1:39123; server_name {HOST}; }}\n", 0o600)
    write(root / "html" / "index.html", f"<h1>Hello {HOST}!</h1>\n")
    with pytest.raises(TemplateError, match=r"html/index\.html: .*@@HAPOOL_HOST@@"):
        templatize_tree(root, {BAKE: PREFIX, "127.0.0.1": ADDRESS, "39123": PORT})
    changed = templatize_tree(root, {BAKE: PREFIX, "127.0.0.1": ADDRESS, "39123": PORT}, rendered={HOST})
    # html/index.html holds nothing to replace: not changed, not refused
    assert changed == ["big.txt", "conf/nginx.conf", "conf/site.conf", "sbin/start"]
    assert (root / "conf" / "site.conf").read_text() == (
        f"server {{ listen {ADDRESS}:{PORT}; server_name {HOST}; }}\n"
    )
    assert (root / "html" / "index.html").read_text() == f"<h1>Hello {HOST}!</h1>\n"
    dest = tmp_path / "host"
    personalize_tree(root, dest, {**VALUES, PREFIX: "/srv/web-3f9a2c"})
    assert (dest / "html" / "index.html").read_text() == "<h1>Hello web-3f9a2c!</h1>\n"
    assert (dest / "conf" / "site.conf").read_text() == (
        "server { listen 127.0.0.1:8081; server_name web-3f9a2c; }\n"
    )


def test_templatize_tree_refuses_a_placeholder_not_rendered_and_writes_nothing(tmp_path: Path) -> None:
    root = bake_tree(tmp_path / "bake")
    write(root / "html" / "index.html", f"<h1>Hello {HOST} of {POOL}!</h1>\n")
    original = tree_snapshot(root)
    with pytest.raises(TemplateError, match=r"html/index\.html: .*@@HAPOOL_POOL@@"):
        templatize_tree(root, {BAKE: PREFIX}, rendered={HOST})  # nothing is replaced by POOL
    assert tree_snapshot(root) == original


@pytest.mark.parametrize(("rendered", "message"), BAD_RENDERED)
def test_templatize_tree_refuses_bad_rendered_values(tmp_path: Path, rendered: Any, message: str) -> None:
    root = bake_tree(tmp_path / "bake")
    original = tree_snapshot(root)
    with pytest.raises(TemplateError, match=message):
        templatize_tree(root, BAKE_R, rendered=rendered)
    assert tree_snapshot(root) == original
