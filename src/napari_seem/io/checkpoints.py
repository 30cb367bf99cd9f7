"""Official SEEM checkpoints on demand: a registry, a verified download cache, and clear offline errors.

The released files live in the Hugging Face repository ``xdecoder/SEEM``. They are fetched with
``pooch`` into napari-seem's cache (``$NAPARI_SEEM_CACHE``, default ``~/.cache/napari-seem``), with
a progress bar and a downloader that resumes: bytes already received stay in ``<file>.partial`` and
the next attempt asks the server only for the rest (HTTP Range). The SHA-256 of each file is
recorded on its first download (``checkpoints/sha256.json``) and checked on every later use: a
cached file that no longer matches is fetched again, and a download that does not match is refused.

Offline: a file placed by hand at ``<cache>/checkpoints/<file name>`` is used as is (and its hash
recorded); without it, the error says exactly where to put it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

HF_REPO = "xdecoder/SEEM"
HF_URL = "https://huggingface.co"


@dataclass(frozen=True)
class OfficialCheckpoint:
    filename: str
    variant: str  # the napari_seem.model preset it loads into
    repo_id: str = HF_REPO


REGISTRY: dict[str, OfficialCheckpoint] = {
    "seem_focalt_v1": OfficialCheckpoint("seem_focalt_v1.pt", "focalt_v1"),
    "seem_focall_v1": OfficialCheckpoint("seem_focall_v1.pt", "focall_v1"),
    "seem_focalt_v0": OfficialCheckpoint("seem_focalt_v0.pt", "focalt_v0"),
    "seem_focall_v0": OfficialCheckpoint("seem_focall_v0.pt", "focall_v0"),
}


class CheckpointUnavailable(RuntimeError):
    """The checkpoint could not be downloaded and is not in the cache."""


class ChecksumMismatch(RuntimeError):
    """A cached checkpoint's SHA-256 differs from the one recorded at its first download."""


def cache_root() -> Path:
    return Path(os.environ.get("NAPARI_SEEM_CACHE", Path.home() / ".cache" / "napari-seem"))


def manual_path(name: str, cache: Path | None = None) -> Path:  # also where downloads land
    """Where a checkpoint placed by hand is looked for."""
    return (cache or cache_root()) / "checkpoints" / _entry(name).filename


def fetch_checkpoint(name: str, cache: Path | None = None, endpoint: str | None = None, progress: bool = True) -> Path:
    """Path of the verified local copy of official checkpoint ``name`` (e.g. ``"seem_focalt_v1"``),
    downloading it first if needed. ``endpoint`` overrides the Hugging Face server (tests, mirrors)."""
    import pooch

    entry = _entry(name)
    folder = (cache or cache_root()) / "checkpoints"
    url = f"{endpoint or HF_URL}/{entry.repo_id}/resolve/main/{entry.filename}"
    records = _read_records(folder)
    expected = records.get(entry.filename)
    try:
        path = Path(pooch.retrieve(
            url,
            known_hash=f"sha256:{expected}" if expected else None,
            fname=entry.filename,
            path=folder,
            downloader=ResumingDownloader(folder / f"{entry.filename}.partial", progress),
        ))
    except ValueError as err:  # pooch: the downloaded file's hash is not the recorded one
        raise ChecksumMismatch(
            f"{entry.filename} from {url} does not match the SHA-256 recorded at its first download "
            f"({expected}); the file on the server changed or the transfer was corrupted ({_first_line(err)})."
        ) from err
    except Exception as err:  # network errors, offline machines, HTTP errors
        raise CheckpointUnavailable(
            f"could not download {entry.filename} from {url} ({type(err).__name__}: {_first_line(err)}).\n"
            f"If this machine is offline, download the file elsewhere and put it at:\n  {folder / entry.filename}\n"
            f"or pass its path directly (e.g. --checkpoint /path/to/{entry.filename})."
        ) from err
    if expected is None:
        _record(folder, records, entry.filename, sha256_of(path))
    return path


class ResumingDownloader:
    """A pooch downloader that keeps partial bytes in ``partial`` and resumes with an HTTP Range."""

    def __init__(self, partial: Path, progress: bool, chunk: int = 1 << 20, timeout: float = 30.0) -> None:
        self.partial, self.progress, self.chunk, self.timeout = partial, progress, chunk, timeout

    def __call__(self, url: str, output_file: str, pooch_instance, check_only: bool = False) -> bool | None:
        import requests
        from tqdm.auto import tqdm

        if check_only:
            return requests.head(url, allow_redirects=True, timeout=self.timeout).ok
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        have = self.partial.stat().st_size if self.partial.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, allow_redirects=True, timeout=self.timeout) as response:
            response.raise_for_status()
            if have and response.status_code != 206:  # the server ignored the Range: start over
                have = 0
            total = have + int(response.headers.get("Content-Length", 0)) or None
            with open(self.partial, "ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, disable=not self.progress,
                desc=self.partial.name.removesuffix(".partial"),
            ) as bar:
                for block in response.iter_content(self.chunk):
                    out.write(block)
                    bar.update(len(block))
        if total is not None and self.partial.stat().st_size != total:
            raise OSError(f"incomplete download: {self.partial.stat().st_size} of {total} bytes (will resume)")
        os.replace(self.partial, output_file)
        return None


def load_official(name: str, device: str = "cpu", **fetch_kwargs):
    """Build the matching model and load the official checkpoint ``name`` into it (strictly). The
    file is read first: a damaged one fails before the (large) model is built."""
    from napari_seem.model import build_seem, load_checkpoint
    from napari_seem.model.checkpoint import read_checkpoint

    entry = _entry(name)
    payload = read_checkpoint(fetch_checkpoint(name, **fetch_kwargs))
    return load_checkpoint(build_seem(entry.variant, device=device), payload)


def _entry(name: str) -> OfficialCheckpoint:
    key = name[:-3] if name.endswith(".pt") else name
    if key not in REGISTRY:
        raise ValueError(f"unknown official checkpoint {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def _read_records(folder: Path) -> dict[str, str]:
    record_file = folder / "sha256.json"
    return json.loads(record_file.read_text()) if record_file.is_file() else {}


def _record(folder: Path, records: dict[str, str], filename: str, digest: str) -> None:
    """Record ``filename``'s SHA-256 (atomically: a crash never leaves a half-written record file)."""
    records = {**records, filename: digest}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "sha256.json.partial"
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True))
    os.replace(tmp, folder / "sha256.json")


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""
