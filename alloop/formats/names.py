"""Map the image names label tools write back to the project's own image names.

Label tools rewrite paths. Label Studio exports ``/data/upload/3/1a2b3c4d-apple_001.jpg`` (its upload
prefix plus an 8-hex-digit dash), ``/data/local-files/?d=subdir/apple_001.jpg``, or the URL alloop
exported (``http://host:8080/row_01/apple_001.jpg``); CVAT keeps the file name or relative path it was
given; KITTI, Pascal VOC and YOLO label files are named after the image's stem.

Resolution order, first hit wins:

1. the exact relative path (after URL decoding and ``\\`` -> ``/``);
2. the longest trailing part of the path that is a project image (``images/row_01/a.jpg`` ->
   ``row_01/a.jpg``: a URL prefix or a storage root in front of the project's path);
3. a unique base name (``a.jpg`` when only one project image is called that), also after dropping
   Label Studio's 8-hex upload prefix.

Names that normalise to a path outside the image root (``../x.jpg``, ``a/../../x.jpg``,
``%2e%2e/x.jpg``, ``..\\x.jpg``, ``/etc/passwd``) are refused before any lookup.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from alloop.errors import LabelError

# Label Studio prefixes uploaded files with the first 8 hex digits of a uuid4 and a dash.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-", re.IGNORECASE)
_URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_WINDOWS_DRIVE = re.compile(r"^[a-z]:/", re.IGNORECASE)


def _stem(name: str) -> str:
    """``row_01/a.jpg`` -> ``row_01/a`` (the path without its last suffix)."""
    base = posixpath.basename(name)
    dot = base.rfind(".")
    return name[: len(name) - len(base) + dot] if dot > 0 else name


def _escapes(where: str, raw: str) -> LabelError:
    return LabelError(
        f"{where}: image name {raw!r}: path escapes the image root; "
        "label files must name images by their path relative to the image root"
    )


class ImageIndex:
    """The project's image names, indexed for resolving the names label tools write."""

    def __init__(self, names: Iterable[str], image_root: Path | None = None) -> None:
        self.names = frozenset(names)
        self.image_root = image_root.resolve() if image_root is not None else None
        # Built on the first name that is not an exact path: a pool of a million images takes
        # seconds to index, and a COCO or Label Studio file names its images exactly (issue 14).
        self._maps: tuple[dict[str, list[str]], ...] | None = None

    def _indexes(self) -> tuple[dict[str, list[str]], ...]:
        """(by base name, by path stem, by base stem), built once."""
        if self._maps is None:
            by_base, by_stem_path, by_stem = defaultdict(list), defaultdict(list), defaultdict(list)
            for name in sorted(self.names):
                base = posixpath.basename(name)
                by_base[base].append(name)
                by_stem_path[_stem(name)].append(name)
                by_stem[_stem(base)].append(name)
            self._maps = (by_base, by_stem_path, by_stem)
        return self._maps

    @property
    def _by_base(self) -> dict[str, list[str]]:
        return self._indexes()[0]

    @property
    def _by_stem_path(self) -> dict[str, list[str]]:
        return self._indexes()[1]

    @property
    def _by_stem(self) -> dict[str, list[str]]:
        return self._indexes()[2]

    # -- raw names -> a clean relative posix path (or an error) -------------------------------

    def _clean(self, raw: str, where: str) -> str:
        """Undo URL/path decorations; refuse anything that leaves the image root."""
        if not isinstance(raw, str) or not raw.strip():
            raise LabelError(f"{where}: empty image name; every record must name its image")
        if "\x00" in raw:
            raise LabelError(f"{where}: image name {raw!r} contains a NUL byte; fix the image name")
        text = raw.strip()
        is_url = bool(_URL_SCHEME.match(text))
        if is_url or text.startswith("/data/"):
            parts = urlsplit(text)
            local = [q[2:] for q in parts.query.split("&") if q.startswith("d=")]
            if local and parts.path.rstrip("/").endswith("local-files"):
                # Label Studio local storage: /data/local-files/?d=<path under its document root>
                text = unquote(local[0])
            else:
                text = unquote(parts.path)
                if not is_url and text.startswith("/data/upload/"):
                    text = text[len("/data/upload/") :]
                # A URL path is relative to whatever served it: drop the leading slash.
                text = text.lstrip("/")
        # Decode percent escapes until stable (one encoding layer per tool that touched the name),
        # so %2e%2e / %252e%252e cannot smuggle a '..' past the check below.
        for _ in range(4):
            decoded = unquote(text)
            if decoded == text:
                break
            text = decoded
        text = text.replace("\\", "/")
        if text.startswith("/") or _WINDOWS_DRIVE.match(text) or text.startswith("~"):
            text = self._relative_to_root(text, raw, where)
        norm = posixpath.normpath(text)
        if norm == ".." or norm.startswith("../") or norm.startswith("/"):
            raise _escapes(where, raw)
        if norm in (".", ""):
            raise LabelError(f"{where}: image name {raw!r} names a directory, not an image file")
        return norm

    def _relative_to_root(self, text: str, raw: str, where: str) -> str:
        """An absolute path is fine only when it lies under the project's image root."""
        if self.image_root is None or _WINDOWS_DRIVE.match(text) or text.startswith("~"):
            raise _escapes(where, raw)
        norm = posixpath.normpath(text)
        root = self.image_root.as_posix().rstrip("/")
        if norm == root or not norm.startswith(root + "/"):
            raise _escapes(where, raw)
        return norm[len(root) + 1 :]

    # -- lookups ----------------------------------------------------------------------------------

    @staticmethod
    def _one(found: list[str], raw: str, where: str) -> str | None:
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
            raise LabelError(
                f"{where}: image name {raw!r} is ambiguous, it matches {len(found)} project images "
                f"({shown}); name it by its path relative to the image root"
            )
        return None

    def _unknown(self, raw: str, where: str) -> LabelError:
        return LabelError(
            f"{where}: image {raw!r} is not in the project ({len(self.names)} images); "
            "label only images alloop exported, or add the image to the project first"
        )

    def resolve(self, raw: str, where: str) -> str:
        """The project's name for the image a label tool calls ``raw``; LabelError if none/ambiguous."""
        clean = self._clean(raw, where)
        if clean in self.names:
            return clean
        parts = clean.split("/")
        for i in range(1, len(parts)):
            suffix = "/".join(parts[i:])
            if suffix in self.names:
                return suffix
        base = parts[-1]
        hit = self._one(self._by_base.get(base, []), raw, where)
        if hit is None and _UPLOAD_PREFIX.match(base):
            hit = self._one(self._by_base.get(base[9:], []), raw, where)
        if hit is None:
            raise self._unknown(raw, where)
        return hit

    def resolve_stem(self, raw_stem: str, where: str) -> str:
        """The project image whose path without extension is ``raw_stem`` (KITTI/VOC/YOLO label files).

        ``raw_stem`` is the label file's path relative to the label dir, without ``.txt``/``.xml``.
        """
        clean = self._clean(raw_stem, where)
        hit = self._one(self._by_stem_path.get(clean, []), raw_stem, where)
        if hit is not None:
            return hit
        parts = clean.split("/")
        for i in range(1, len(parts) - 1):
            hit = self._one(self._by_stem_path.get("/".join(parts[i:]), []), raw_stem, where)
            if hit is not None:
                return hit
        hit = self._one(self._by_stem.get(parts[-1], []), raw_stem, where)
        if hit is None and "__" in parts[-1]:
            # alloop's KITTI export flattens row_01/a.jpg to row_01__a (TAO reads flat folders).
            hit = self._one(self._by_stem_path.get(parts[-1].replace("__", "/"), []), raw_stem, where)
        if hit is None:
            raise self._unknown(raw_stem, where)
        return hit


def resolve_image_name(
    raw: str, images: Iterable[str], *, source: str = "labels", image_root: Path | None = None
) -> str:
    """The project's name (relative posix path) for the image a label tool calls ``raw``.

    Builds an index each call; readers resolving many names use :class:`ImageIndex` directly.
    """
    return ImageIndex(images, image_root).resolve(raw, source)


def flat_stem(file_name: str) -> str:
    """``row_01/apple_001.jpg`` -> ``row_01__apple_001``: the name in flat export folders.

    TAO and datumaro's YOLO importer read flat folders; :meth:`ImageIndex.resolve_stem` maps the
    ``__`` back to the sub-folder on import.
    """
    p = PurePosixPath(file_name)
    return "__".join((*p.parent.parts, p.stem))


def flat_names(file_names: Iterable[str]) -> dict[str, str]:
    """file_name -> flat stem; LabelError when two images flatten to the same name (case-blind)."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in file_names:
        stem = flat_stem(name)
        if stem.lower() in seen:
            raise LabelError(
                f"images {seen[stem.lower()]!r} and {name!r} both become {stem!r} in the export's flat "
                "folders; rename one of them"
            )
        seen[stem.lower()] = name
        out[name] = stem
    return out


def is_safe_relative(name: str) -> bool:
    """True when ``name`` is a clean relative posix path inside the root (used before writing files)."""
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name


__all__ = ["ImageIndex", "flat_names", "flat_stem", "is_safe_relative", "resolve_image_name"]
