"""Label Studio's COCO, Pascal VOC and YOLO exports, zipped as downloaded or unzipped: its image names mapped back.

Measured on Label Studio 1.23 (its converter in label-studio-sdk 2.1), these exports name images in
ways no project does:

- images in Local Storage: COCO ``file_name`` is the file's path relative to Label Studio's own
  export folder, ``../../data/images/row_01/a.jpg``;
- downloaded images (COCO/YOLO "with images", VOC): ``images/<first 8 hex of md5(url)>__<base name>``,
  in ``file_name``, VOC ``<filename>`` and label file names;
- YOLO without images: ``labels/<base name>.txt``, so two images with one base name in different
  folders share a name (Label Studio keeps only one of them);
- VOC: no XML for an image without boxes.

Here the leading ``../`` parts and the ``<hash>__`` prefix are dropped and the rest resolves like
any name (the longest tail that is a project path, else a unique base name). When that is
ambiguous and the export carries the image itself, its content picks the project image with the
same bytes. The readers of :mod:`alloop.formats.coco`, :mod:`~alloop.formats.voc` and
:mod:`~alloop.formats.yolo` do the rest; a zip's label files are read from a temporary folder,
its images straight from the zip.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from alloop.errors import LabelError
from alloop.formats.names import ImageIndex
from alloop.formats.records import ParsedLabels, read_member, zip_members

_HASH_PREFIX = re.compile(r"^[0-9a-f]{8}__", re.IGNORECASE)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_LABEL_SUFFIXES = (".json", ".xml", ".txt", ".yaml", ".yml")
USE_JSON = "Label Studio's JSON export (Export → JSON) names every image exactly; import that one instead"


def _strip(name: str) -> str:
    """``../../x/images/7a13c5a8__a.jpg`` -> ``x/images/a.jpg``."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    while parts and parts[0] == "..":
        parts.pop(0)
    if parts:
        parts[-1] = _HASH_PREFIX.sub("", parts[-1])
    return "/".join(parts)


class _Export:
    """The export's files: label files on disk (a zip's extracted), images on disk or in the zip."""

    def __init__(self, source: Path, root: Path, images: Mapping[str, str], archive: Path | None) -> None:
        self.source = source  # what the user passed
        self.root = root  # where the label files are
        self.images = dict(images)  # base name as written (hash prefix kept) -> file or zip member
        self.archive = archive

    def image_bytes(self, base: str) -> bytes | None:
        where = self.images.get(base)
        if where is None:
            return None
        if self.archive is not None:
            return read_member(self.archive, where)
        return Path(where).read_bytes()


@contextmanager
def _opened(path: Path) -> Iterator[_Export]:
    """The export as a folder: a zip's label files extracted to a temporary folder (its images left in it)."""
    if path.is_dir():
        images = {p.name: str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES}
        yield _Export(path, path, images, None)
        return
    if path.suffix.lower() != ".zip":
        yield _Export(path, path, {}, None)
        return
    members = zip_members(path)
    tmp = Path(tempfile.mkdtemp(prefix="alloop-ls-export-"))
    try:
        images = {}
        for name in members:
            rel = PurePosixPath(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise LabelError(f"{path}: member {name!r} points outside the archive; download the export again")
            if rel.suffix.lower() in _IMAGE_SUFFIXES:
                images[rel.name] = name
            elif rel.suffix.lower() in _LABEL_SUFFIXES:
                target = tmp.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(read_member(path, name))
        yield _Export(path, tmp, images, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class LabelStudioIndex(ImageIndex):
    """The project's names, resolving Label Studio's export names (see the module docstring)."""

    def __init__(self, index: ImageIndex, export: _Export) -> None:
        super().__init__(index.names, index.image_root)
        self.export = export
        self._sha_of: dict[str, str] = {}

    def _sha(self, name: str) -> str | None:
        if name not in self._sha_of:
            if self.image_root is None:
                return None
            try:
                self._sha_of[name] = hashlib.sha256((self.image_root / name).read_bytes()).hexdigest()
            except OSError:
                return None
        return self._sha_of[name]

    def _by_content(self, written_base: str, candidates: Sequence[str]) -> str | None:
        """The candidate whose file has the bytes of the export's own copy of ``written_base``."""
        data = self.export.image_bytes(written_base)
        if data is None or len(candidates) < 2:
            return None
        digest = hashlib.sha256(data).hexdigest()
        same = [c for c in candidates if self._sha(c) == digest]
        return same[0] if len(same) == 1 else None

    def _hint(self, err: LabelError) -> LabelError:
        return LabelError(f"{err}; {USE_JSON}")

    def resolve(self, raw: str, where: str) -> str:
        base = raw.replace("\\", "/").rsplit("/", 1)[-1]
        clean = _strip(raw)
        candidates = self._by_base.get(clean.rsplit("/", 1)[-1], [])
        hit = self._by_content(base, candidates)
        if hit is not None:
            return hit
        try:
            return super().resolve(clean, where)
        except LabelError as err:
            raise self._hint(err) from None

    def resolve_stem(self, raw_stem: str, where: str) -> str:
        written = raw_stem.replace("\\", "/").rsplit("/", 1)[-1]
        clean = _strip(raw_stem)
        candidates = self._by_stem.get(clean.rsplit("/", 1)[-1], [])
        image = next((b for b in self.export.images if b.rsplit(".", 1)[0] == written), None)
        hit = self._by_content(image, candidates) if image else None
        if hit is not None:
            return hit
        try:
            return super().resolve_stem(clean, where)
        except LabelError as err:
            if "ambiguous" in str(err) and image is None:
                raise LabelError(
                    f"{err}: Label Studio's YOLO export without images names label files by base name only "
                    f"(and keeps one of each); export \"YOLO with images\" or, better, JSON, and import that"
                ) from None
            raise self._hint(err) from None


# -- which export is it ------------------------------------------------------------------------

def _is_ls_coco(doc: object) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("info"), dict) \
        and doc["info"].get("contributor") == "Label Studio" and "images" in doc


def kind_of(path: Path) -> str | None:
    """``coco``, ``voc`` or ``yolo`` for a Label Studio export (zip, folder or result.json), else None."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        if not zipfile.is_zipfile(path):
            return None
        names = [PurePosixPath(n) for n in zip_members(path)]
        if any(n.name == "result.json" and len(n.parts) == 1 for n in names):
            return "coco"
        if any(n.parts[0] == "Annotations" and n.suffix == ".xml" for n in names) \
                and any(n.parts[0] == "images" for n in names):
            return "voc"
        if any(n.name == "notes.json" for n in names) and any(n.name == "classes.txt" for n in names):
            return "yolo"
        return None
    if path.is_file() and path.suffix.lower() == ".json":
        try:
            with path.open("rb") as f:
                head = f.read(1 << 20)
            return "coco" if b'"Label Studio"' in head and _is_ls_coco(json.loads(path.read_bytes())) else None
        except (OSError, ValueError):
            return None
    if path.is_dir():
        if (path / "result.json").is_file() and kind_of(path / "result.json") == "coco":
            return "coco"
        if (path / "notes.json").is_file() and (path / "classes.txt").is_file():
            return "yolo"
        owner = next(iter(sorted((path / "Annotations").glob("*.xml"))), None) if (path / "Annotations").is_dir() else None
        if owner is not None and b"<name>Label Studio</name>" in owner.read_bytes()[:4096]:
            return "voc"
    return None


# -- reading -----------------------------------------------------------------------------------

def _relabel(text: str, tmp: Path, source: Path) -> str:
    """Messages name the zip and its member, not the temporary folder it was read from."""
    if str(tmp) == str(source):
        return text
    return text.replace(f"{tmp}/", f"{source}:").replace(str(tmp), f"{source}:")


def read(path: Path, *, kind: str, classes: Sequence[str], index: ImageIndex,
         sizes: Mapping[str, tuple[int, int]], **options: object) -> ParsedLabels:
    """Parse a Label Studio COCO/VOC/YOLO export with the matching reader and Label Studio's names resolved."""
    from alloop.formats import coco, voc, yolo

    module = {"coco": coco, "voc": voc, "yolo": yolo}[kind]
    with _opened(Path(path)) as export:
        target = export.root
        if kind == "coco" and target.is_dir():
            target = target / "result.json"
        elif kind == "voc" and (target / "Annotations").is_dir():
            target = target / "Annotations"
        ls_index = LabelStudioIndex(index, export)
        try:
            parsed = module.read(target, classes=tuple(classes), index=ls_index, sizes=sizes, **options)
            for raw in parsed.images:
                if raw.resolved is None:
                    raw.resolved = (ls_index.resolve_stem if raw.by_stem else ls_index.resolve)(raw.name, raw.where)
        except LabelError as err:
            raise LabelError(_relabel(str(err), export.root, export.source)) from None
        for raw in parsed.images:
            raw.where = _relabel(raw.where, export.root, export.source)
            raw.boxes = [(box, _relabel(where, export.root, export.source)) for box, where in raw.boxes]
        parsed.warnings = [_relabel(w, export.root, export.source) for w in parsed.warnings]
        if kind == "voc":
            described = {raw.name.rsplit("/", 1)[-1] for raw in parsed.images}
            bare = sorted(b for b in export.images if b not in described)
            if bare:
                parsed.warnings.append(
                    f"{export.source}: {len(bare)} image(s) have no XML (Label Studio's VOC export writes none for "
                    f"an image without boxes), so they stay waiting for labels: "
                    f"{', '.join(_strip(b) for b in bare[:5])}{' ...' if len(bare) > 5 else ''}; "
                    "import the JSON export to record them as having no objects"
                )
    return parsed


__all__ = ["LabelStudioIndex", "kind_of", "read"]
