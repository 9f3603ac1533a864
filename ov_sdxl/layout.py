"""The converted-model folder: ``<root>/base``, ``<root>/refiner`` and the ``<root>/ov_sdxl.json`` manifest.

The manifest records the sources, the weight format, library versions and every file's size and sha256. It is
written last, so its presence means "finished". Loading checks sizes (cheap); ``verify`` checks hashes.

    from ov_sdxl.layout import ModelLayout
    layout = ModelLayout.open("models/sdxl")      # raises ModelNotFoundError / CorruptModelError
    layout.base, layout.refiner, layout.manifest
    layout.shared_parts()                         # sub-models the refiner can take from the base
    layout.tiny_vae                               # the TAESDXL decoder's folder, or None

A plain optimum-intel export (a folder holding ``model_index.json``) is accepted as a base-only model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ov_sdxl.errors import CorruptModelError, ModelNotFoundError

log = logging.getLogger(__name__)

MANIFEST_NAME = "ov_sdxl.json"
FORMAT_VERSION = 1
STAGES = ("base", "refiner")
TINY_VAE = "taesdxl"  # the manifest's source key and the folder of the TAESDXL decoder (convert/tiny_vae.py)
SHAREABLE_PARTS = ("text_encoder_2", "vae_decoder", "vae_encoder")
CONVERT_HINT = "convert one with: python convert.py --base <hub id or folder> --output <dir>"


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ov-sdxl", "openvino", "optimum-intel", "optimum", "diffusers", "transformers", "nncf", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def describe_files(root: Path, known: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file below ``root``, keyed by POSIX relative path; ``known`` gives hashes already
    computed in this run (relative path -> sha256), which are not computed again."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST_NAME:
            continue
        files[rel] = {"size": path.stat().st_size, "sha256": (known or {}).get(rel) or sha256_file(path)}
    return files


def write_manifest(
    root: Path,
    sources: dict[str, str | None],
    weights: str,
    extra: dict[str, Any] | None = None,
    known: dict[str, str] | None = None,
):
    """Write the manifest for a finished export in ``root`` (atomically: temp file, then rename)."""
    import datetime

    manifest = {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sources": sources,
        "weights": weights,
        "versions": library_versions(),
        **(extra or {}),
        "files": describe_files(root, known),
    }
    _write_atomically(root, manifest)
    return manifest


def add_source(root: Path, key: str, label: str) -> None:
    """Record a source added to a finished model (``key``'s files are in place): the manifest gains its label
    and the files it brought; the other entries are kept as they are."""
    manifest = read_manifest(root)
    known = {rel: entry["sha256"] for rel, entry in manifest["files"].items() if not rel.startswith(f"{key}/")}
    manifest["sources"][key] = label
    manifest["files"] = describe_files(root, known)
    _write_atomically(root, manifest)


def _write_atomically(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)


def read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"{path} is not readable JSON ({exc}); reconvert with --overwrite") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise CorruptModelError(
            f"{path} has manifest format {version!r}, this ov-sdxl reads format {FORMAT_VERSION}; "
            "reconvert with --overwrite"
        )
    return manifest


@dataclass(frozen=True)
class ModelLayout:
    """A model folder that passed the load-time checks."""

    root: Path
    base: Path
    refiner: Path | None
    manifest: dict[str, Any] | None
    tiny_vae: Path | None = None  # the TAESDXL decoder's folder, when one was converted

    @classmethod
    def open(cls, root: str | Path) -> ModelLayout:
        root = Path(root)
        if root.is_file():
            raise ModelNotFoundError(f"{root} is a file, not a model folder; give the folder convert made")
        if not root.is_dir():
            raise ModelNotFoundError(f"model folder {root} does not exist; {CONVERT_HINT}")
        manifest = read_manifest(root)
        if manifest is None and (root / "model_index.json").is_file():
            log.warning("%s is a plain optimum-intel export (no %s): used as a base-only model", root, MANIFEST_NAME)
            return cls(root=root, base=root, refiner=None, manifest=None)
        if manifest is None:
            raise ModelNotFoundError(f"{root} is not a converted ov-sdxl model (no {MANIFEST_NAME}); {CONVERT_HINT}")
        stages = {stage: root / stage for stage in STAGES if manifest["sources"].get(stage)}
        if "base" not in stages:
            raise CorruptModelError(f"{root / MANIFEST_NAME} names no base model; reconvert with --overwrite")
        for path in stages.values():
            if not (path / "model_index.json").is_file():
                raise ModelNotFoundError(f"sub-model {path} is missing; reconvert with --overwrite")
        tiny_vae = root / TINY_VAE / "vae_decoder" if manifest["sources"].get(TINY_VAE) else None
        layout = cls(
            root=root, base=stages["base"], refiner=stages.get("refiner"), manifest=manifest, tiny_vae=tiny_vae
        )
        layout.check_sizes()
        return layout

    @property
    def inpainting(self) -> bool:
        """Whether the base is an inpainting model (9-channel UNet): it runs inpaint and outpaint only."""
        return bool((self.manifest or {}).get("inpainting"))

    def check_sizes(self) -> None:
        """Every file the manifest lists is present with its recorded size (a cheap check at every load)."""
        for rel, entry in (self.manifest or {}).get("files", {}).items():
            path = self.root / rel
            if not path.is_file():
                raise ModelNotFoundError(f"{path} is missing; reconvert with --overwrite")
            size = path.stat().st_size
            if size != entry["size"]:
                raise CorruptModelError(
                    f"{path} is {size} bytes, the manifest says {entry['size']} (truncated or changed); "
                    "reconvert with --overwrite"
                )

    def verify(self) -> list[str]:
        """Check every file's sha256 against the manifest; return the mismatching paths (empty when all match)."""
        if self.manifest is None:
            raise ModelNotFoundError(f"{self.root} has no {MANIFEST_NAME} to verify against")
        self.check_sizes()
        return [
            rel for rel, entry in self.manifest["files"].items() if sha256_file(self.root / rel) != entry["sha256"]
        ]

    def shared_parts(self) -> list[str]:
        """Sub-models whose weights are byte-identical in base and refiner, so one loaded copy can serve both.

        The weight file's sha256 decides: the XML differs between two exports of the same module only in
        generated node names.
        """
        if self.refiner is None or self.manifest is None:
            return []
        files = self.manifest["files"]
        shared = []
        for part in SHAREABLE_PARTS:
            base = files.get(f"base/{part}/openvino_model.bin")
            refiner = files.get(f"refiner/{part}/openvino_model.bin")
            if base and refiner and base["sha256"] == refiner["sha256"]:
                shared.append(part)
        return shared

    def is_complete(self) -> bool:
        return self.manifest is not None
