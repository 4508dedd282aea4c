"""Launch templates: what makes a host of a pool, its version, its per-host values, its records.

A pool's *launch template* is everything that makes one of its hosts: the provider's base image
(an id string: a docker image id, a box, a directory), the resolved ``nginx_web_*`` variables
of the pool, the content of the nginx_web role's files and any extra files. Its *version* is a
content hash of those inputs (:func:`template_version`, 12 hex digits): the same inputs give
the same version on any controller, any change to one of them gives a new one. A template is
*baked* once per version (a docker image, or a directory tree for the local provider) and hosts
are launched from the baked artefact instead of being provisioned one by one.

Per-host values cannot be baked in: the artefact holds placeholders, substituted at launch by
:func:`personalize` / :func:`personalize_tree`. The known ones (:data:`PLACEHOLDERS`):

- ``@@HAPOOL_HOST@@``    — the instance name;
- ``@@HAPOOL_POOL@@``    — the pool name;
- ``@@HAPOOL_ADDRESS@@`` — the address the host serves on;
- ``@@HAPOOL_PORT@@``    — the port the host serves on;
- ``@@HAPOOL_PREFIX@@``  — the host's own directory (local provider).

Any ``@@HAPOOL_[A-Z0-9_]+@@`` is a placeholder (:data:`PLACEHOLDER_RE`); one in a text without a
value is an error, never left in place. Substitution is one pass and a value may not contain
``@@HAPOOL_``, so a value never brings in another placeholder.

The round trip: a bake renders the role with concrete values ``nginx -t`` accepts (the bake
directory as prefix, a throw-away listen), :func:`templatize_tree` turns exactly those strings into
placeholders, and each launch copies that tree with :func:`personalize_tree` and the host's values.

Each pool keeps one index of its baked versions, ``<state_root>/templates/<pool>/index.json``
(:func:`index_path`), written atomically (``files.atomic_write``)::

    {"schema": 1, "pool": "web", "current": "3f9a2c0b1d4e",
     "versions": [{"version": "3f9a2c0b1d4e", "artifact": "hapool/web:3f9a2c0b1d4e",
                   "baked_at": 1764687600.0, "usable": true, "reason": ""}, ...]}

``current`` is the version new hosts launch from: always a usable one, or null before the first
good bake. A failed bake is recorded (``usable: false`` and its ``reason``) and leaves
``current`` alone. An index that cannot be read or does not validate is an error naming the file:
hapool never acts (bakes, deletes artefacts) on state it could not read.

The decisions (:func:`plan_bake`, :func:`record_bake`, :func:`plan_gc`, :func:`hosts_behind`) are
pure: time (``now``) and the versions live hosts run are passed in, never read here. Stdlib only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from .errors import InvalidNameError, TemplateError
from .files import atomic_write
from .providers.names import validate_pool  # providers/ never imports templates.py: no cycle

# --- placeholders ---------------------------------------------------------------------------------

PLACEHOLDER_MARK = "@@HAPOOL_"
PLACEHOLDER_RE = re.compile(r"@@HAPOOL_[A-Z0-9_]+@@")

HOST = "@@HAPOOL_HOST@@"
POOL = "@@HAPOOL_POOL@@"
ADDRESS = "@@HAPOOL_ADDRESS@@"
PORT = "@@HAPOOL_PORT@@"
PREFIX = "@@HAPOOL_PREFIX@@"

PLACEHOLDERS: Mapping[str, str] = {
    HOST: "the instance name",
    POOL: "the pool name",
    ADDRESS: "the address the host serves on",
    PORT: "the port the host serves on",
    PREFIX: "the host's own directory (local provider)",
}
"""Every placeholder hapool substitutes at launch, with its meaning."""

# --- versions ---------------------------------------------------------------------------------------

TEMPLATE_SCHEMA = 1  # part of the hashed payload: a new way of hashing gives new versions
VERSION_LENGTH = 12
VERSION_RE = re.compile(r"^[0-9a-f]{12}$")
DEFAULT_EXCLUDE: tuple[str, ...] = ("molecule", "README.md", "__pycache__", "*.pyc")
MAX_PERSONALIZE_BYTES = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_DEPTH = 64
_CHUNK = 1 << 16


@dataclass(frozen=True)
class TemplateInputs:
    """The inputs of a launch template; :func:`template_version` hashes them."""

    pool: str
    provider: str
    base: str  # the provider's base image, by id
    variables: Mapping[str, Any] = field(default_factory=dict)  # resolved nginx_web_*: JSON-safe
    files: Mapping[str, str] = field(default_factory=dict)  # POSIX relative path -> sha256 hex


def _excluded(rel: str, name: str, exclude: Iterable[str]) -> bool:
    """A pattern with a ``/`` matches the relative path, any other one the name of an entry at
    any depth (so ``__pycache__`` and ``*.pyc`` go wherever they are)."""
    return any(fnmatchcase(rel if "/" in pattern else name, pattern) for pattern in exclude)


def _walk(
    top: str, skip: Callable[[str, str], bool] | None = None
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(POSIX relative path, entry) of everything under ``top``: each directory's entries sorted by
    name, a directory's content after all its siblings, the last directory seen first (a stack).

    Only real directories are descended into, a symlink never is. An entry for which
    ``skip(rel, name)`` is true is neither yielded nor descended into. A directory that cannot be
    listed raises the OSError of ``os.scandir`` (its ``filename`` names the directory).
    """
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(os.path.join(top, rel_dir) if rel_dir else top) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if skip is not None and skip(rel, entry.name):
                continue
            yield rel, entry
            if entry.is_dir(follow_symlinks=False):
                pending.append(rel)


def file_digest(path: str | os.PathLike[str], *, what: str = "", follow_symlinks: bool = True) -> str:
    """The sha256 (hex) of the content of the file at ``path``.

    A symlink is followed (it is the file the caller names), unless ``follow_symlinks`` is false:
    then it cannot be read. A file that cannot be read is a :class:`TemplateError`
    ``cannot read <what> <path>: <why>``.
    """
    name = os.fspath(path)
    digest = hashlib.sha256()
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(name, flags)
        try:
            handle = os.fdopen(fd, "rb")  # refuses a directory (EISDIR)
        except BaseException:
            os.close(fd)
            raise
        with handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        label = f"{what} {name}" if what else name
        raise TemplateError(f"cannot read {label}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _link_digest(path: str) -> str:
    try:
        target = os.readlink(path)
    except OSError as exc:
        raise TemplateError(f"cannot read the symlink {path}: {exc.strerror or exc}") from exc
    # a prefix, so that a link to "x" and a file holding "x" differ
    return hashlib.sha256(b"symlink\0" + os.fsencode(target)).hexdigest()


def file_digests(root: str | os.PathLike[str], *, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> dict[str, str]:
    """The sha256 (hex) of every regular file under ``root``, keyed by POSIX relative path, sorted.

    Entries matching ``exclude`` (fnmatch patterns; see :func:`_excluded`) are skipped, with
    everything under them. A symlink is hashed by its target text, never followed (so nothing
    outside ``root`` is read). Sockets, FIFOs and devices are not content and are skipped; empty
    directories hold no file and do not count. A file that cannot be read is a
    :class:`TemplateError` naming it.
    """
    base = os.fspath(root)
    patterns = (exclude,) if isinstance(exclude, str) else tuple(exclude)  # one pattern, not its letters
    if not os.path.isdir(base):
        raise TemplateError(f"{base} is not a directory")
    digests: dict[str, str] = {}
    try:
        for rel, entry in _walk(base, lambda rel, name: _excluded(rel, name, patterns)):
            if entry.is_symlink():
                digests[rel] = _link_digest(entry.path)
            elif entry.is_file(follow_symlinks=False):
                digests[rel] = file_digest(entry.path, follow_symlinks=False)
    except OSError as exc:  # from the walk: a directory that cannot be listed
        raise TemplateError(f"cannot list {exc.filename or base}: {exc.strerror or exc}") from exc
    return dict(sorted(digests.items()))


def template_files(role_dir: str, extra: Sequence[str]) -> dict[str, str]:
    """Every file of a template and its sha256: ``role/<relative path>`` for the files under
    ``role_dir`` (:func:`file_digests`, its default excludes), ``extra/<basename>`` for the
    ``extra`` files (:func:`file_digest`, a symlink followed: it is the file the caller names).

    A role_dir that cannot be read, an extra file that cannot be read and two extra files with the
    same basename are a :class:`TemplateError` naming them.
    """
    try:
        role = file_digests(role_dir)
    except TemplateError as exc:
        raise TemplateError(f"role_dir {role_dir}: {exc}") from None
    files = {f"role/{rel}": digest for rel, digest in role.items()}
    seen: dict[str, str] = {}
    for path in extra:
        name = os.path.basename(os.path.normpath(path))
        if name in seen:
            raise TemplateError(
                f"the extra files {seen[name]} and {path} have the same basename {name!r} "
                "(extra files are keyed by basename)"
            )
        seen[name] = path
        files[f"extra/{name}"] = file_digest(path, what="the extra file")
    return files


def _json_safe(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as plain JSON types (tuples become lists), or a TemplateError naming ``where``."""
    if depth > _MAX_DEPTH:
        raise TemplateError(f"variable {where} is nested too deeply (a cycle?)")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError(f"variable {where} is {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"variable {where} has a key that is not a string: {key!r}")
            result[key] = _json_safe(item, f"{where}.{key}", depth + 1)
        return result
    raise TemplateError(f"variable {where} is not JSON-safe: a {type(value).__name__}")


def template_version(inputs: TemplateInputs) -> str:
    """The version of a launch template: the first 12 hex digits of the sha256 of a canonical JSON
    of its inputs (sorted keys, no spaces, ASCII) and :data:`TEMPLATE_SCHEMA`.

    Mapping order does not matter; any change to the pool, the provider, the base, a variable,
    a file's name or a file's content gives a new version. A variable that JSON cannot hold
    exactly (a set, bytes, NaN, a non-string key) is a :class:`TemplateError` naming it.
    """
    for what in ("pool", "provider", "base"):
        if not isinstance(getattr(inputs, what), str):
            raise TemplateError(f"template {what} must be a string, not {getattr(inputs, what)!r}")
    if not isinstance(inputs.variables, Mapping):
        raise TemplateError("template variables must be a mapping of names to values")
    if not isinstance(inputs.files, Mapping):
        raise TemplateError("template files must be a mapping of relative paths to sha256 digests")
    variables: dict[str, Any] = {}
    for name, value in inputs.variables.items():
        if not isinstance(name, str):
            raise TemplateError(f"variable name {name!r} is not a string")
        variables[name] = _json_safe(value, name)
    for path, digest in inputs.files.items():
        if not isinstance(path, str) or not isinstance(digest, str) or not _SHA256_RE.match(digest):
            raise TemplateError(f"template file {path!r}: {digest!r} is not a sha256 hex digest")
    payload = {
        "schema": TEMPLATE_SCHEMA,
        "pool": inputs.pool,
        "provider": inputs.provider,
        "base": inputs.base,
        "variables": variables,
        "files": dict(inputs.files),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:VERSION_LENGTH]


# --- personalize ------------------------------------------------------------------------------------


def _checked_values(values: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not PLACEHOLDER_RE.fullmatch(key):
            raise TemplateError(f"{key!r} is not a placeholder (@@HAPOOL_NAME@@, capitals, digits, _)")
        if not isinstance(value, str):
            raise TemplateError(f"the value of {key} must be a string, not a {type(value).__name__}")
        if PLACEHOLDER_MARK in value:
            raise TemplateError(
                f"the value of {key} contains {PLACEHOLDER_MARK!r}: a value may not bring in a placeholder"
            )
        checked[key] = value
    return checked


def _substitute(text: str, values: dict[str, str]) -> str:
    missing = sorted({found for found in PLACEHOLDER_RE.findall(text) if found not in values})
    if missing:
        raise TemplateError(f"no value for the placeholder(s) {', '.join(missing)}")
    # a function, not a replacement string: backslashes and group references in values stay as is
    return PLACEHOLDER_RE.sub(lambda match: values[match.group(0)], text)


def personalize(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every placeholder replaced by its value, in one pass.

    ``values`` maps placeholders (``"@@HAPOOL_HOST@@"``) to strings; a value may not contain
    ``@@HAPOOL_``. A placeholder in ``text`` without a value is a :class:`TemplateError` naming it.
    """
    if not isinstance(text, str):
        raise TemplateError(f"personalize takes a text, not a {type(text).__name__}")
    return _substitute(text, _checked_values(values))


def _remove_tree(path: str) -> None:
    """Remove a partial copy, also when a directory of it was already made read-only."""
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            if not os.path.islink(sub):
                with contextlib.suppress(OSError):
                    os.chmod(sub, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _copy_file(source: str, target: str, rel: str, values: dict[str, str], max_bytes: int) -> bool:
    """Copy one regular file, keeping its mode; personalize it when it is small UTF-8 text.
    True when a placeholder was substituted."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as reader:
        info = os.fstat(reader.fileno())
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(out, "wb") as writer:
            changed = False
            if info.st_size > max_bytes:
                shutil.copyfileobj(reader, writer, _CHUNK)
            else:
                data = reader.read()
                text: str | None = None
                if len(data) <= max_bytes and b"\0" not in data:  # NUL: binary even if it decodes
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError:
                        text = None
                if text is not None:
                    try:
                        new = _substitute(text, values)
                    except TemplateError as exc:
                        raise TemplateError(f"{rel}: {exc}") from None
                    if new != text:
                        data, changed = new.encode("utf-8"), True
                writer.write(data)
            writer.flush()
            os.fchmod(writer.fileno(), stat.S_IMODE(info.st_mode))
    return changed


def personalize_tree(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    values: Mapping[str, str],
    *,
    max_bytes: int = MAX_PERSONALIZE_BYTES,
) -> list[str]:
    """Copy the tree ``src`` to ``dest`` (which must not exist), personalizing it on the way.

    Every regular file that is UTF-8 text (no NUL byte) of at most ``max_bytes`` bytes gets its
    placeholders substituted (:func:`personalize`); other files are copied byte for byte. File
    and directory modes are kept; symlinks are copied as symlinks (their target text as is);
    sockets, FIFOs and devices are skipped. On any failure the partial ``dest`` is removed and a
    :class:`TemplateError` says what failed. Returns the relative paths (POSIX, sorted) of the
    files in which something was substituted.
    """
    checked = _checked_values(values)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise TemplateError(f"max_bytes must be a whole number >= 0, not {max_bytes!r}")
    source = os.path.abspath(os.fspath(src))
    target = os.path.abspath(os.fspath(dest))
    if not os.path.isdir(source):
        raise TemplateError(f"the template tree {source} is not a directory")
    if os.path.lexists(target):
        raise TemplateError(f"{target} already exists: a personalized copy goes to a new directory")
    real_source = os.path.realpath(source)
    if os.path.commonpath([real_source, os.path.realpath(target)]) == real_source:
        raise TemplateError(f"{target} is inside the template tree {source}")
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.mkdir(target, 0o700)
    except OSError as exc:  # not ours: nothing to remove
        raise TemplateError(f"cannot create {target}: {exc.strerror or exc}") from exc
    try:
        return _copy_tree(source, target, checked, max_bytes)
    except BaseException as exc:
        _remove_tree(target)
        if isinstance(exc, TemplateError):
            raise TemplateError(f"cannot personalize {source} into {target}: {exc}") from exc
        if isinstance(exc, OSError):
            where = exc.filename or source
            raise TemplateError(
                f"cannot personalize {source} into {target}: {where}: {exc.strerror or exc}"
            ) from exc
        raise


def _copy_tree(source: str, target: str, values: dict[str, str], max_bytes: int) -> list[str]:
    changed: list[str] = []
    dir_modes = [(target, stat.S_IMODE(os.stat(source).st_mode))]
    for rel, entry in _walk(source):
        out = os.path.join(target, rel)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), out)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(out, 0o700)
            dir_modes.append((out, stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)))
        elif entry.is_file(follow_symlinks=False) and _copy_file(entry.path, out, rel, values, max_bytes):
            changed.append(rel)
    # last and deepest first: a read-only directory must not stop the copy of what it holds
    for path, mode in reversed(dir_modes):
        os.chmod(path, mode)
    return sorted(changed)



# --- templatize: the inverse of personalize -------------------------------------------------------


def _checked_replacements(replacements: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in replacements.items():
        if not isinstance(key, str) or not key:
            raise TemplateError(f"a string to replace must be a non-empty string, not {key!r}")
        if PLACEHOLDER_MARK in key:
            raise TemplateError(
                f"the string to replace {key!r} contains {PLACEHOLDER_MARK!r}: a placeholder is not a value"
            )
        if not isinstance(value, str) or not PLACEHOLDER_RE.fullmatch(value):
            raise TemplateError(
                f"{key!r} must be replaced by a placeholder (@@HAPOOL_NAME@@: capitals, digits, _), "
                f"not {value!r}"
            )
        checked[key] = value
    return checked


def _replacer(checked: Mapping[str, str]) -> re.Pattern[str] | None:
    """One alternation of the keys, longest first: where two keys match at the same place, the
    longer one (one that contains the other) wins."""
    if not checked:
        return None
    keys = sorted(checked, key=lambda key: (-len(key), key))
    return re.compile("|".join(re.escape(key) for key in keys))


def _templatize(
    text: str,
    checked: Mapping[str, str],
    pattern: re.Pattern[str] | None,
    rendered: frozenset[str] = frozenset(),
) -> str:
    found = [(match.start(), match.end(), match.group(0)) for match in PLACEHOLDER_RE.finditer(text)]
    allowed = set(checked.values()) | rendered
    foreign = sorted({placeholder for _, _, placeholder in found if placeholder not in allowed})
    if foreign:
        raise TemplateError(
            f"the text already holds the placeholder(s) {', '.join(foreign)}, which no string is replaced "
            "by: at launch it would be ambiguous"
        )
    matches = list(pattern.finditer(text)) if pattern is not None else []
    if not matches:
        return text
    pieces: list[str] = []
    expected: list[tuple[int, str]] = []  # (position in the result, placeholder)
    position = shift = index = 0
    for match in matches:
        start, end = match.span()
        while index < len(found) and found[index][1] <= start:
            expected.append((found[index][0] + shift, found[index][2]))
            index += 1
        if index < len(found) and found[index][0] < end:
            raise TemplateError(
                f"{match.group(0)!r} overlaps the placeholder {found[index][2]} the text already holds"
            )
        placeholder = checked[match.group(0)]
        pieces += (text[position:start], placeholder)
        expected.append((start + shift, placeholder))
        shift += len(placeholder) - (end - start)
        position = end
    expected += [(start + shift, placeholder) for start, _, placeholder in found[index:]]
    pieces.append(text[position:])
    result = "".join(pieces)
    # a placeholder put next to text such as "@@HAPOOL_A" may read differently: "@@HAPOOL_A@@..."
    actual = [(match.start(), match.group(0)) for match in PLACEHOLDER_RE.finditer(result)]
    if actual != expected:
        wrong = next(item for item in [*actual, *expected] if (item in actual) != (item in expected))
        raise TemplateError(
            f"replacing would make the placeholders read differently around {wrong[1]} (a string to replace "
            f"next to {PLACEHOLDER_MARK!r} or '@@' in the text)"
        )
    return result


def _checked_rendered(rendered: Iterable[str]) -> frozenset[str]:
    if isinstance(rendered, str):
        raise TemplateError("rendered must be a collection of placeholders, not one string")
    out = frozenset(rendered)
    for item in out:
        if not isinstance(item, str) or not PLACEHOLDER_RE.fullmatch(item):
            raise TemplateError(f"rendered: {item!r} is not a placeholder (@@HAPOOL_NAME@@)")
    return out


def templatize(text: str, replacements: Mapping[str, str], *, rendered: Iterable[str] = ()) -> str:
    """``text`` with each exact string of ``replacements`` (a key) replaced by its placeholder (its
    value): the inverse of :func:`personalize`.

    One pass, keys longest first (so a key that contains another wins), so a replaced text is never
    replaced again. Refused (:class:`TemplateError`): an empty key, a key containing
    ``@@HAPOOL_``, a value that is not a placeholder, a text that already holds a placeholder that
    is none of the values (it would be ambiguous at launch), and a replacement that would change
    which placeholders the text reads as (a key overlapping a placeholder, or put next to
    ``@@HAPOOL_...``). For a text without ``@@HAPOOL_`` and ``values`` (placeholder -> non-empty
    string), ``personalize(templatize(text, {v: p for p, v in values.items()}), values) == text``.

    ``rendered``: placeholders the text may already hold because they were rendered into it on
    purpose (a bake renders ``nginx_web_hostname: "@@HAPOOL_HOST@@"``); any other one is refused.
    """
    if not isinstance(text, str):
        raise TemplateError(f"templatize takes a text, not a {type(text).__name__}")
    checked = _checked_replacements(replacements)
    return _templatize(text, checked, _replacer(checked), _checked_rendered(rendered))


def _read_text(path: str, max_bytes: int) -> tuple[str | None, int]:
    """The text of a regular file and its mode; None when it is binary, too big or not UTF-8."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as reader:
        info = os.fstat(reader.fileno())
        mode = stat.S_IMODE(info.st_mode)
        if info.st_size > max_bytes:
            return None, mode
        data = reader.read(max_bytes + 1)
    if len(data) > max_bytes or b"\0" in data:
        return None, mode
    try:
        return data.decode("utf-8"), mode
    except UnicodeDecodeError:
        return None, mode


def _templatized_files(
    top: str,
    checked: Mapping[str, str],
    pattern: re.Pattern[str] | None,
    max_bytes: int,
    rendered: frozenset[str] = frozenset(),
) -> list[tuple[str, str, str, int]]:
    """(relative path, path, new text, mode) of every file under ``top`` that templatizing changes;
    nothing is written."""
    changes: list[tuple[str, str, str, int]] = []
    for rel, entry in _walk(top):
        if entry.is_symlink():
            target = os.readlink(entry.path)
            hit = pattern.search(target) if pattern is not None else None
            if hit is not None:
                raise TemplateError(
                    f"{rel}: the symlink's target {target!r} holds {hit.group(0)!r}: a link's target "
                    "is not personalized at launch, every host would point where the bake did"
                )
        elif entry.is_file(follow_symlinks=False):
            text, mode = _read_text(entry.path, max_bytes)
            if text is None:
                continue
            try:
                new = _templatize(text, checked, pattern, rendered)
            except TemplateError as exc:
                raise TemplateError(f"{rel}: {exc}") from None
            if new != text:
                changes.append((rel, entry.path, new, mode))
    return changes


def templatize_tree(
    root: str | os.PathLike[str],
    replacements: Mapping[str, str],
    *,
    max_bytes: int = MAX_PERSONALIZE_BYTES,
    rendered: Iterable[str] = (),
) -> list[str]:
    """:func:`templatize` every regular file under ``root`` in place; the relative paths (POSIX,
    sorted) of the files that changed.

    The files :func:`personalize_tree` would personalize are the ones templatized: UTF-8 text, no
    NUL byte, at most ``max_bytes`` bytes; others are left alone. A changed file is replaced
    atomically (``files.atomic_write``), keeping its mode. Symlinks are not followed, and a symlink
    whose target holds a string to replace is refused: a link's target is not personalized at
    launch, every host would point where the bake did. Every file is templatized before any is
    written, so a refusal (:class:`TemplateError`, naming the file) leaves the tree as it was; an
    error while writing leaves each file old or new, never half of one. ``rendered`` as for
    :func:`templatize`.
    """
    checked = _checked_replacements(replacements)
    allowed = _checked_rendered(rendered)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise TemplateError(f"max_bytes must be a whole number >= 0, not {max_bytes!r}")
    top = os.path.abspath(os.fspath(root))
    if not os.path.isdir(top) or os.path.islink(top):
        raise TemplateError(f"the tree to templatize {top} is not a directory (a symlink is not followed)")
    try:
        changes = _templatized_files(top, checked, _replacer(checked), max_bytes, allowed)
        for _, path, new, mode in changes:
            atomic_write(path, new, mode=mode)
    except TemplateError as exc:
        raise TemplateError(f"cannot templatize {top}: {exc}") from exc
    except OSError as exc:
        where = exc.filename or top
        raise TemplateError(f"cannot templatize {top}: {where}: {exc.strerror or exc}") from exc
    return sorted(rel for rel, _, _, _ in changes)


# --- the index of baked versions ------------------------------------------------------------------

INDEX_SCHEMA = 1


@dataclass(frozen=True)
class TemplateVersion:
    """One bake of a pool's template: its version, where the artefact is, when, and whether it
    passed validation (``usable``; ``reason`` says why not)."""

    version: str
    artifact: str  # a docker image reference or a directory
    baked_at: float
    usable: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "artifact": self.artifact,
            "baked_at": self.baked_at,
            "usable": self.usable,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Any) -> TemplateVersion:
        if not isinstance(data, Mapping):
            raise TemplateError(f"a version record must be an object, not {data!r}")
        version = data.get("version")
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise TemplateError(f"version {version!r} is not {VERSION_LENGTH} lowercase hex digits")
        artifact = data.get("artifact")
        if not isinstance(artifact, str) or not artifact:
            raise TemplateError(f"version {version}: artifact {artifact!r} is not a non-empty string")
        baked_at = data.get("baked_at")
        if isinstance(baked_at, bool) or not isinstance(baked_at, int | float) or not math.isfinite(baked_at):
            raise TemplateError(f"version {version}: baked_at {baked_at!r} is not a time")
        usable = data.get("usable")
        if not isinstance(usable, bool):
            raise TemplateError(f"version {version}: usable {usable!r} is not true or false")
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise TemplateError(f"version {version}: reason {reason!r} is not a string")
        return cls(version, artifact, float(baked_at), usable, reason)


@dataclass(frozen=True)
class TemplateIndex:
    """A pool's baked versions, in the order they were recorded, and the current one."""

    pool: str
    current: str | None = None
    versions: tuple[TemplateVersion, ...] = ()

    def get(self, version: str) -> TemplateVersion | None:
        return next((record for record in self.versions if record.version == version), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": INDEX_SCHEMA,
            "pool": self.pool,
            "current": self.current,
            "versions": [record.to_dict() for record in self.versions],
        }

    @classmethod
    def from_dict(cls, data: Any) -> TemplateIndex:
        """The index ``data`` holds, validated: a :class:`TemplateError` says what is wrong."""
        if not isinstance(data, Mapping):
            raise TemplateError(f"a template index must be an object, not {type(data).__name__}")
        if data.get("schema") != INDEX_SCHEMA:
            schema = data.get("schema")
            raise TemplateError(f"unknown template index schema {schema!r} (expected {INDEX_SCHEMA})")
        pool = data.get("pool")
        if not isinstance(pool, str):
            raise TemplateError(f"pool {pool!r} is not a pool name")
        try:
            validate_pool(pool)
        except InvalidNameError as exc:
            raise TemplateError(str(exc)) from None
        current = data.get("current")
        if current is not None and not isinstance(current, str):
            raise TemplateError(f"current {current!r} is not a version or null")
        raw = data.get("versions")
        if not isinstance(raw, list):
            raise TemplateError(f"versions {raw!r} is not a list")
        records: list[TemplateVersion] = []
        for number, item in enumerate(raw, 1):
            try:
                record = TemplateVersion.from_dict(item)
            except TemplateError as exc:
                raise TemplateError(f"version record {number}: {exc}") from None
            if any(seen.version == record.version for seen in records):
                raise TemplateError(f"version {record.version} is recorded twice")
            records.append(record)
        index = cls(pool, current, tuple(records))
        if current is not None:
            found = index.get(current)
            if found is None:
                raise TemplateError(f"current {current!r} is not one of the recorded versions")
            if not found.usable:
                raise TemplateError(f"current {current} is recorded as not usable")
        return index


def index_path(state_root: str | os.PathLike[str], pool: str) -> str:
    """``<state_root>/templates/<pool>/index.json``; the pool name is validated (it makes a path)."""
    return os.path.join(os.fspath(state_root), "templates", validate_pool(pool), "index.json")


def read_index(path: str | os.PathLike[str], pool: str) -> TemplateIndex:
    """The index at ``path``; an empty one (no current, no versions) when the file does not exist.

    A file that cannot be read, is not JSON, does not validate or belongs to another pool is a
    :class:`TemplateError` naming the file.
    """
    validate_pool(pool)
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return TemplateIndex(pool)
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read the template index {name}: {exc}") from exc
    try:
        index = TemplateIndex.from_dict(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError
        raise TemplateError(f"the template index {name} is not JSON: {exc}") from None
    except TemplateError as exc:
        raise TemplateError(f"the template index {name} is corrupt: {exc}") from None
    if index.pool != pool:
        raise TemplateError(f"the template index {name} is pool {index.pool!r}'s, not {pool!r}'s")
    return index


def write_index(path: str | os.PathLike[str], index: TemplateIndex) -> None:
    """Write ``index`` to ``path`` atomically; an index that would not read back is refused."""
    data = index.to_dict()
    try:
        TemplateIndex.from_dict(data)
    except TemplateError as exc:
        name = os.fspath(path)
        raise TemplateError(f"refusing to write an invalid template index to {name}: {exc}") from None
    try:
        atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise TemplateError(f"cannot write the template index {os.fspath(path)}: {exc}") from exc


# --- decisions ------------------------------------------------------------------------------------


def plan_bake(index: TemplateIndex, version: str) -> str:
    """``"reuse"`` when ``version`` is recorded usable, ``"bake"`` otherwise (never baked, or its
    last bake failed)."""
    record = index.get(version)
    return "reuse" if record is not None and record.usable else "bake"


def record_bake(
    index: TemplateIndex,
    version: str,
    artifact: str,
    now: float,
    *,
    usable: bool,
    reason: str = "",
) -> TemplateIndex:
    """``index`` with the outcome of a bake recorded (replacing an earlier record of ``version``).

    A usable bake becomes the current version; a failed one is recorded (``usable`` false, with
    its ``reason``) and the current version does not change. A failed bake of a version already
    recorded usable is refused (:func:`plan_bake` reuses that version: the caller is wrong).
    """
    record = TemplateVersion.from_dict(
        {"version": version, "artifact": artifact, "baked_at": now, "usable": usable, "reason": reason}
    )
    if not usable:
        earlier = index.get(version)
        if earlier is not None and earlier.usable:
            raise TemplateError(
                f"version {version} is already recorded usable ({earlier.artifact}); a failed bake "
                "may not replace it"
            )
    versions = (*(other for other in index.versions if other.version != version), record)
    return TemplateIndex(index.pool, version if usable else index.current, versions)


def plan_gc(index: TemplateIndex, in_use: Iterable[str], keep: int = 2) -> list[TemplateVersion]:
    """The versions whose artefacts (and records) can go, oldest first.

    Kept: ``keep`` usable versions, the current one and the most recent others (by ``baked_at``:
    the rollback targets); every version in ``in_use`` (a live host runs it); and the failed
    records no older than the oldest kept usable version (recent failures stay to be seen; with
    no usable version kept, the most recent failure stays).
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise TemplateError(f"keep must be a whole number >= 1 (the current version), not {keep!r}")
    live = set(in_use)
    newest_first = sorted(index.versions, key=lambda record: (record.baked_at, record.version), reverse=True)
    kept_usable = [record for record in newest_first if record.version == index.current]
    others = [record for record in newest_first if record.usable and record.version != index.current]
    kept_usable += others[: max(keep - len(kept_usable), 0)]
    failed = [record for record in newest_first if not record.usable]
    if kept_usable:
        threshold = min(record.baked_at for record in kept_usable)
    elif failed:
        threshold = failed[0].baked_at
    else:
        threshold = math.inf
    kept = {record.version for record in kept_usable} | live
    kept |= {record.version for record in failed if record.baked_at >= threshold}
    return sorted(
        (record for record in index.versions if record.version not in kept),
        key=lambda record: (record.baked_at, record.version),
    )


def drop_versions(index: TemplateIndex, versions: Iterable[str]) -> TemplateIndex:
    """``index`` without the records of ``versions`` (after their artefacts were deleted); the
    current version cannot be dropped."""
    gone = set(versions)
    if index.current is not None and index.current in gone:
        raise TemplateError(f"version {index.current} is current: it cannot be dropped")
    return TemplateIndex(index.pool, index.current, tuple(r for r in index.versions if r.version not in gone))


def hosts_behind(index: TemplateIndex, host_versions: Mapping[str, str | None]) -> list[str]:
    """The hosts (sorted) whose template version is not the current one. A host of unknown
    version (None: a bare, provisioned host) is behind too; with no current version, none is."""
    if index.current is None:
        return []
    return sorted(name for name, version in host_versions.items() if version != index.current)
