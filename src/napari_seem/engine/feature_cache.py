"""``FeatureCache``: encoded images on disk (zarr v3), so an image is encoded once, ever.

    cache = FeatureCache()                               # $NAPARI_SEEM_CACHE/features by default
    predictor = SeemPredictor(model, cache=cache)        # set_image: a hit loads, a miss encodes + stores

**What an entry holds.** The encoder's costly outputs that the prompt half needs: the pixel decoder's
mask features ``[1, C, Hp/4, Wp/4]`` and its multi-scale maps ``[1, C, Hp/s, Wp/s]`` (s = 32, 16, 8),
byte for byte and in their memory order (the pixel decoder returns channels-last maps; restoring the
strides lets every later kernel see the same layout as after a fresh encode, so decoding from a hit
gives bit-identical results). The decoder
memory (level embeddings, positions, per-layer key/value projections) is recomputed on load with
``prepare_memory``: storing it would more than double an entry. The backbone maps are not stored (only
``encode`` reads them): a loaded :class:`ImageFeatures` has ``backbone == {}``.

**Key** (sha256, the entry's folder name) of: the prepared image tensor (``PreparedImage.rgb``, after
channel choice, normalisation and resize, so any change of those is a different key), its shape and
dtype; the model-side preprocessing (pixel mean/std buffers, the position offsets of the pixel decoder
and decoder); and :func:`model_fingerprint` (weights + config as JSON, mode included). The device is
not part of it: features encoded on a GPU machine serve a CPU laptop.

**Integrity.** The entry's attributes record the key, the model fingerprint, the sizes and each
array's shape, dtype, memory order and sha256, plus a sha256 of those attributes. A read checks all of
it; any mismatch, missing array or read error makes the lookup a miss: a warning is logged, the entry is
deleted and the caller encodes again. Entries are written in ``<directory>/.tmp`` and renamed into
place, so a crash never leaves an entry that looks valid.

**Size.** With ``max_bytes``, the least recently used entries (the last hit touches the entry) are
deleted after each store until the cache fits (the newest entry always stays).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from napari_seem.io.checkpoints import cache_root
from napari_seem.model import ImageFeatures, SeemModel

from .image import PreparedImage

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SWITCH_ENV = "NAPARI_SEEM_FEATURE_CACHE"  # "0" (or off/false/no) switches the plugin's cache off
DEFAULT_MAX_BYTES = 10 * 2**30  # the plugin's default cache: ~290 focal-T 512x512 planes (37 MB each)
ATTRS_NAME = "napari_seem_features"  # the entry's metadata, under one key of the group attributes
_TMP_DIR = ".tmp"
_STALE_TMP_S = 3600.0  # an unfinished write older than this is a crashed one
_KEY = re.compile(r"^[0-9a-f]{64}$")
_FINGERPRINT_ATTR = "_napari_seem_weights_digest"


class InvalidEntry(Exception):
    """A cache entry that must not be used (corrupted, tampered with, or written for other inputs)."""


def default_cache_dir() -> Path:
    """``$NAPARI_SEEM_CACHE/features`` (default ``~/.cache/napari-seem/features``)."""
    return cache_root() / "features"


def default_feature_cache() -> FeatureCache | None:
    """The plugin's cache: the default folder, at most ``DEFAULT_MAX_BYTES``; ``None`` when the
    environment variable ``NAPARI_SEEM_FEATURE_CACHE`` is 0, off, false or no, or when the folder
    cannot be created (logged: segmentation then works as without a cache)."""
    if os.environ.get(SWITCH_ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    try:
        return FeatureCache(default_cache_dir(), max_bytes=DEFAULT_MAX_BYTES)
    except (OSError, ValueError) as err:
        log.warning("feature cache: not used (%s)", err)
        return None


def encode_prepared(model: SeemModel, prepared: PreparedImage) -> ImageFeatures:
    """``model.encode`` of one prepared image (``rgb [3, h, w]``), without autograd."""
    with torch.no_grad():
        return model.encode(torch.from_numpy(prepared.rgb)[None])


# ---------------------------------------------------------------------------------------- keys
def model_fingerprint(model: SeemModel) -> str:
    """sha256 of the model's weights (``state_dict``: names, dtypes, shapes, bytes) and its config as
    JSON (mode included).

    Hashing the weights takes a while (0.6-0.9 s for focal-T's 660 MB here), so their digest is kept on
    the model and reused while every tensor is the same storage at the same torch version counter:
    ``load_state_dict``, optimiser steps and other in-place updates bump the counter and cause a new
    digest. Writes through ``tensor.data`` bypass the counter: delete the attribute
    ``_napari_seem_weights_digest`` after them."""
    tensors = model.state_dict(keep_vars=True)
    state = tuple((name, t.data_ptr(), t._version) for name, t in tensors.items())
    cached = model.__dict__.get(_FINGERPRINT_ATTR)
    if cached is None or cached[0] != state:
        cached = (state, _weights_digest(tensors))
        model.__dict__[_FINGERPRINT_ATTR] = cached
    config = json.dumps(asdict(model.cfg), sort_keys=True, default=str)
    return hashlib.sha256(f"{cached[1]}|{config}".encode()).hexdigest()


def _weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name, tensor in tensors.items():
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().data if data.numel() else b"")
    return digest.hexdigest()


def feature_key(prepared: PreparedImage, model: SeemModel) -> str:
    """The cache key of ``prepared``'s features under ``model`` (see the module docstring)."""
    rgb = np.ascontiguousarray(prepared.rgb)
    digest = hashlib.sha256(rgb.data)
    digest.update(json.dumps(_model_preprocessing(model, rgb), sort_keys=True).encode())
    digest.update(model_fingerprint(model).encode())
    return digest.hexdigest()


def _model_preprocessing(model: SeemModel, rgb: np.ndarray) -> dict:
    """What, besides the weights and config, turns ``rgb`` into features."""
    return {
        "format": FORMAT_VERSION,
        "rgb": [list(rgb.shape), str(rgb.dtype)],
        "pixel_mean": model.pixel_mean.flatten().tolist(),
        "pixel_std": model.pixel_std.flatten().tolist(),
        "position_offset": [list(model.sem_seg_head.pixel_decoder.position_offset),
                            list(model.predictor.position_offset)],
    }


# ---------------------------------------------------------------------------------------- the cache
class FeatureCache:
    """Encoded images in ``directory`` (one zarr v3 group per entry, ``<directory>/<key>``), at most
    ``max_bytes`` of them (``None``: unbounded). ``compress``: Blosc/zstd with byte shuffle (lossless).

    ``hits``, ``misses``: lookups by :meth:`get_or_encode` and :meth:`load`; ``rejected``: entries
    found invalid (each also counts as a miss)."""

    def __init__(
        self, directory: str | Path | None = None, max_bytes: int | None = None, compress: bool = True
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive (or None for no bound), got {max_bytes}")
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"feature cache {self.directory} is a file, not a folder")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.compress = compress
        self.hits = self.misses = self.rejected = 0
        self._remove_stale_writes()

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r}, max_bytes={self.max_bytes})"

    # ------------------------------------------------------------------ lookups
    def get_or_encode(self, model: SeemModel, prepared: PreparedImage) -> ImageFeatures:
        """The features of ``prepared``: loaded on a hit, else encoded and stored. A failed store
        (disk full, no permission) is logged and the fresh features are returned all the same."""
        key = feature_key(prepared, model)
        features = self._load(key, prepared, model)
        if features is not None:
            return features
        features = encode_prepared(model, prepared)
        try:
            self._store(key, features)
        except OSError as err:
            log.warning("feature cache: could not store an entry in %s (%s)", self.directory, err)
        return features

    def load(self, model: SeemModel, prepared: PreparedImage) -> ImageFeatures | None:
        """The cached features of ``prepared`` (verified), or ``None``."""
        return self._load(feature_key(prepared, model), prepared, model)

    def store(self, model: SeemModel, prepared: PreparedImage, features: ImageFeatures) -> Path:
        """Store ``features``, the fresh encoding of ``prepared`` by ``model``; returns the entry."""
        return self._store(feature_key(prepared, model), features)

    def contains(self, model: SeemModel, prepared: PreparedImage) -> bool:
        """Whether an entry exists for ``prepared`` (not verified: :meth:`load` does that)."""
        return self.entry_path(feature_key(prepared, model)).is_dir()

    # ------------------------------------------------------------------ entries
    def entry_path(self, key: str) -> Path:
        return self.directory / key

    def entries(self) -> list[Path]:
        """The entry folders (in no particular order)."""
        return [p for p in self.directory.iterdir() if _KEY.match(p.name) and p.is_dir()]

    def size_bytes(self) -> int:
        """Bytes on disk of all entries."""
        return sum(_tree_bytes(p) for p in self.entries())

    def clear(self) -> None:
        """Delete every entry (and unfinished writes)."""
        for path in self.entries():
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.directory / _TMP_DIR, ignore_errors=True)

    # ------------------------------------------------------------------ read
    def _load(self, key: str, prepared: PreparedImage, model: SeemModel) -> ImageFeatures | None:
        path = self.entry_path(key)
        if not path.is_dir():
            self.misses += 1
            return None
        try:
            features = _read_entry(path, key, prepared, model)
        except Exception as err:  # noqa: BLE001  (zarr, JSON and codec errors alike mean: not usable)
            log.warning("feature cache: entry %s is not usable (%s: %s); it is deleted and the image "
                        "encoded again", path, type(err).__name__, err)
            shutil.rmtree(path, ignore_errors=True)
            self.rejected += 1
            self.misses += 1
            return None
        _touch(path)
        self.hits += 1
        return features

    # ------------------------------------------------------------------ write
    def _store(self, key: str, features: ImageFeatures) -> Path:
        import zarr

        arrays = _stored_tensors(features)
        scratch = self.directory / _TMP_DIR / f"{key}.{uuid.uuid4().hex}"
        scratch.parent.mkdir(parents=True, exist_ok=True)
        target = self.entry_path(key)
        try:
            group = zarr.open_group(store=str(scratch), mode="w", zarr_format=3)
            specs = {name: self._write_array(group, name, tensor) for name, tensor in arrays.items()}
            meta = {"format": FORMAT_VERSION, "key": key, "image_size": list(features.image_size),
                    "padded_size": list(features.padded_size), "arrays": specs}
            meta["meta_sha256"] = _meta_digest(meta)
            group.attrs.update({ATTRS_NAME: meta})
            try:
                os.rename(scratch, target)  # atomic: the entry appears complete or not at all
            except OSError:
                if not target.is_dir():
                    raise
                # Another process stored the same entry meanwhile; keep theirs.
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._evict(keep=target)
        return target

    def _write_array(self, group, name: str, tensor: torch.Tensor) -> dict:
        """One tensor as a single-chunk array in its memory order; returns its spec for the metadata."""
        import zarr

        data, order = _physical(tensor)
        compressors = zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="shuffle") if self.compress else None
        array = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=data.shape, compressors=compressors)
        array[...] = data
        return {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."), "order": order,
                "sha256": hashlib.sha256(data.data).hexdigest()}

    def _evict(self, keep: Path) -> None:
        """Delete least recently used entries (never ``keep``) until the cache fits ``max_bytes``."""
        if self.max_bytes is None:
            return
        entries = sorted(self.entries(), key=_last_access)
        sizes = {path: _tree_bytes(path) for path in entries}
        total = sum(sizes.values())
        for path in entries:
            if total <= self.max_bytes:
                break
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)
                total -= sizes[path]

    def _remove_stale_writes(self) -> None:
        scratch = self.directory / _TMP_DIR
        if not scratch.is_dir():
            return
        now = time.time()
        for path in scratch.iterdir():
            try:
                if now - path.stat().st_mtime > _STALE_TMP_S:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass  # removed by another process meanwhile


# ---------------------------------------------------------------------------------------- entry format
def _stored_tensors(features: ImageFeatures) -> dict[str, torch.Tensor]:
    """The tensors an entry holds: ``mask_features`` and ``multi_scale_<l>`` (the pixel decoder's)."""
    if not features.multi_scale or features.mask_features.shape[0] != 1:
        raise ValueError("only a fresh encoding of one image (with its multi-scale maps) can be cached")
    tensors = {"mask_features": features.mask_features}
    tensors.update({f"multi_scale_{level}": t for level, t in enumerate(features.multi_scale)})
    return tensors


def _physical(tensor: torch.Tensor) -> tuple[np.ndarray, list[int]]:
    """``tensor`` as a C-ordered array of its dims in memory order (outermost first), and that order."""
    order = sorted(range(tensor.dim()), key=lambda d: tensor.stride(d), reverse=True)  # stable on ties
    data = tensor.detach().permute(order).contiguous().to("cpu")
    if data.dtype == torch.bfloat16:  # numpy has no bfloat16: keep its bits
        data = data.view(torch.int16)
    return data.numpy(), order


def _logical(data: np.ndarray, dtype: torch.dtype, order: list[int], device: torch.device) -> torch.Tensor:
    """Inverse of :func:`_physical`: the tensor with the original dims and strides."""
    tensor = torch.from_numpy(np.require(data, requirements=["C", "W"])).view(dtype)
    return tensor.permute([order.index(d) for d in range(len(order))]).to(device)


def _meta_digest(meta: dict) -> str:
    content = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _read_entry(path: Path, key: str, prepared: PreparedImage, model: SeemModel) -> ImageFeatures:
    """The verified features of entry ``path``; :class:`InvalidEntry` (or a zarr error) otherwise."""
    import zarr

    group = zarr.open_group(store=str(path), mode="r", zarr_format=3)
    meta = group.attrs.get(ATTRS_NAME)
    _check_meta(meta, key, prepared, model)
    dtype = next(model.parameters()).dtype
    tensors = {}
    for name, spec in meta["arrays"].items():
        array = group[name]
        physical_shape = [spec["shape"][d] for d in spec["order"]]
        if not isinstance(array, zarr.Array) or list(array.shape) != physical_shape:
            raise InvalidEntry(f"array {name} has shape {getattr(array, 'shape', None)}, expected {physical_shape}")
        data = array[...]
        if hashlib.sha256(np.ascontiguousarray(data).data).hexdigest() != spec["sha256"]:
            raise InvalidEntry(f"array {name}: checksum mismatch")
        tensors[name] = _logical(data, dtype, spec["order"], model.device)
    levels = [tensors[f"multi_scale_{level}"] for level in range(len(tensors) - 1)]
    with torch.no_grad():
        memory = model.predictor.prepare_memory(levels, tensors["mask_features"])
    return ImageFeatures({}, tensors["mask_features"], levels, memory, tuple(meta["image_size"]),
                         tuple(meta["padded_size"]))


def _check_meta(meta, key: str, prepared: PreparedImage, model: SeemModel) -> None:
    """The entry's metadata is intact, for this key, and describes what ``model`` makes of ``prepared``."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise InvalidEntry(f"no metadata of format {FORMAT_VERSION}")
    if meta.get("meta_sha256") != _meta_digest(meta):
        raise InvalidEntry("metadata checksum mismatch")
    if meta["key"] != key:
        raise InvalidEntry("written for another key")
    image_size = tuple(meta["image_size"])
    padded = model.padded_size(*image_size)
    if image_size != prepared.model_shape or tuple(meta["padded_size"]) != padded:
        raise InvalidEntry(f"sizes {image_size}/{meta['padded_size']} do not match the image {prepared.model_shape}")
    expected = _expected_shapes(model, padded)
    shapes = {name: tuple(spec["shape"]) for name, spec in meta["arrays"].items()}
    if shapes != expected:
        raise InvalidEntry(f"arrays {shapes} differ from the model's {expected}")
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    for name, spec in meta["arrays"].items():
        if spec["dtype"] != dtype or sorted(spec["order"]) != list(range(len(spec["shape"]))):
            raise InvalidEntry(f"array {name}: dtype {spec['dtype']} (model: {dtype}) or order {spec['order']}")


def _expected_shapes(model: SeemModel, padded: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Logical shapes of the stored tensors for an image padded to ``padded`` (strides 4 and 32, 16, 8)."""
    cfg = model.cfg.pixel_decoder
    height, width = padded
    shapes = {"mask_features": (1, cfg.mask_dim, height // 4, width // 4)}
    for level in range(model.sem_seg_head.pixel_decoder.num_feature_levels):
        stride = 32 >> level
        shapes[f"multi_scale_{level}"] = (1, cfg.conv_dim, height // stride, width // stride)
    return shapes


def _tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                pass  # deleted meanwhile
    return total


def _last_access(path: Path) -> float:
    """When the entry was last written or hit (the mtime of its ``zarr.json``, touched on hits)."""
    try:
        return (path / "zarr.json").stat().st_mtime
    except OSError:
        return 0.0


def _touch(path: Path) -> None:
    try:
        os.utime(path / "zarr.json")
    except OSError:
        pass  # a read-only cache still serves hits
