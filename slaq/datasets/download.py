"""Downloads with pooch, verified by the registry's hash or the data directory's lock file.

A download no hash pins is *unvalidated* until its conversion produced arrays of the
registry's shape: only then is its SHA-256 recorded in the lock (:func:`pin_validated`).
A download that fails validation is removed (:func:`discard_unvalidated`), and an unpinned
file found in ``downloads/`` (left by a run that stopped before validating it) is never
parsed: it is downloaded afresh (docs/design.md §5).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from slaq.datasets.lock import Lock
from slaq.datasets.raw import RawFile, compression_of, file_hash, mismatch, sha256_file
from slaq.datasets.registry import DatasetError, DatasetInfo, FileSpec, Source
from slaq.traces import honour_umask

log = logging.getLogger("slaq.datasets")

RETRIES = 3
OFFLINE_HINT = (
    "No network? The offline default needs no download: run `snakemake --cores N` "
    "(config/config.yaml), and `slaq datasets list` shows which datasets are available offline."
)
_POOCH_METHODS = {"gz": "gzip", "bz2": "bzip2", "xz": "xz"}


def download_names(source: Source) -> tuple[str, str]:
    """File names in ``downloads/NAME/``: the file as published and its decompressed copy."""
    fname = source.location.rstrip("/").rsplit("/", 1)[-1]
    if compression_of(source) is None:
        return fname, fname
    suffix = Path(fname).suffix
    return fname, (fname[: -len(suffix)] if suffix else fname + ".raw")


def pinned_hash(source: Source, lock: Lock) -> tuple[str | None, str]:
    """The hash a download must have (``alg:hex``, or None) and what pinned it."""
    if source.hash:
        # A registry hash always wins over the lock file.
        return source.hash, "registry"
    locked = lock.get(source.location)
    return (f"sha256:{locked}" if locked else None), f"lock file {lock.path}"


def download_problem(source: Source, download_dir: Path, lock: Lock) -> str | None:
    """None if ``downloads/`` holds this source's file matching its pinned hash, else why not."""
    fname, _ = download_names(source)
    path = download_dir / fname
    if not path.is_file():
        return f"no copy in {download_dir}"
    known, pinned_by = pinned_hash(source, lock)
    if known is None:
        return f"{path} was never validated"
    actual = file_hash(path, known)
    if actual != known:
        return f"{path} is corrupt: {actual}, the {pinned_by} pins {known}"
    return None


def _discard(download_dir: Path, source: Source) -> None:
    for name in set(download_names(source)):
        (download_dir / name).unlink(missing_ok=True)


def _download_error(
    info: DatasetInfo, url: str, exc: Exception, retries: int, pinned_by: str
) -> DatasetError:
    """A one-line DatasetError for what pooch or requests raised."""
    import requests

    if isinstance(exc, requests.HTTPError):
        response = exc.response
        status = f"{response.status_code} {response.reason}" if response is not None else "error"
        return DatasetError(f"{info.name}: downloading {url} failed: HTTP {status}")
    if isinstance(exc, requests.ConnectionError):
        return DatasetError(
            f"{info.name}: cannot reach {url} ({type(exc).__name__}). {OFFLINE_HINT}"
        )
    if isinstance(exc, requests.RequestException):
        return DatasetError(
            f"{info.name}: downloading {url} was interrupted {retries + 1} times"
            f" ({type(exc).__name__}); nothing was kept, try again later"
        )
    if isinstance(exc, ValueError):
        match = re.search(r"expected (\S+) but got (\S+?)\.", str(exc))
        if match is None:
            return DatasetError(f"{info.name}: fetching {url} failed: {exc}")
        expected, actual = match.groups()
        return DatasetError(
            f"{info.name}: the file downloaded from {url} does not match the hash pinned in the"
            f" {pinned_by}: expected {expected}, got {actual} (rejected, not cached)"
        )
    return DatasetError(f"{info.name}: cannot store or decompress {url}: {exc}")


def _pooch_fetch(
    info: DatasetInfo,
    source: Source,
    download_dir: Path,
    known: str | None,
    pinned_by: str,
    retries: int,
) -> Path:
    """Download (or reuse, if it matches ``known``) and decompress one file; its path."""
    import pooch
    import requests

    fname, out_name = download_names(source)
    compression = compression_of(source)
    processor = None
    if compression:
        # pooch.Decompress writes in place and reuses an existing output; a crash could have
        # left a partial one, so always decompress afresh from the verified download.
        (download_dir / out_name).unlink(missing_ok=True)
        processor = pooch.Decompress(method=_POOCH_METHODS[compression], name=out_name)
    pup = pooch.create(
        path=download_dir,
        base_url="",
        registry={fname: known},
        urls={fname: source.location},
        retry_if_failed=retries,
    )
    # tqdm's carriage returns would flood Snakemake's log files; show bars on terminals only.
    downloader = pooch.HTTPDownloader(
        progressbar=sys.stderr.isatty(), chunk_size=1 << 20, timeout=60
    )
    log.info("%s: fetching %s", info.name, source.location)
    try:
        out = Path(pup.fetch(fname, processor=processor, downloader=downloader))
    except (requests.RequestException, ValueError, OSError, EOFError) as exc:
        if not isinstance(exc, requests.RequestException | ValueError):
            # Corrupt compressed data or a full disk: the next try starts afresh.
            _discard(download_dir, source)
        raise _download_error(info, source.location, exc, retries, pinned_by) from None
    # pooch moves a NamedTemporaryFile (mode 0600) into place. A reused download may belong
    # to another user of a shared data directory: its mode is then not ours to change.
    with contextlib.suppress(PermissionError):
        honour_umask(download_dir / fname)
    return out


def fetch_url(
    info: DatasetInfo,
    spec: FileSpec,
    source: Source,
    *,
    download_dir: Path,
    lock: Lock,
    retries: int = RETRIES,
) -> RawFile:
    """Download one file (or reuse a verified download); unpinned downloads are unvalidated."""
    fname, _ = download_names(source)
    known, pinned_by = pinned_hash(source, lock)
    download_dir.mkdir(parents=True, exist_ok=True)
    if known is None and (download_dir / fname).exists():
        # Never validated (else the lock would pin it): possibly the bad copy that failed.
        log.info("%s: discarding unvalidated %s, downloading afresh", info.name, fname)
        _discard(download_dir, source)
    out = _pooch_fetch(info, source, download_dir, known, pinned_by, retries)
    actual = sha256_file(out) if spec.sha256 else None
    if spec.sha256 and actual != spec.sha256:
        _discard(download_dir, source)
        what = f"content downloaded from {source.location}"
        raise mismatch(info, what, spec.sha256, str(actual))
    published = known or f"sha256:{sha256_file(download_dir / fname)}"
    return RawFile(
        source,
        path=out,
        sha256=actual,
        published_hash=published,
        download=download_dir / fname,
        unpinned=known is None,
    )


def drop_decompressed(raw: Iterable[RawFile]) -> None:
    """Delete the decompressed copies of downloads (conversion inputs, re-made when needed)."""
    for r in raw:
        if r.download is not None and r.path is not None and r.path != r.download:
            r.path.unlink(missing_ok=True)


def discard_unvalidated(raw: Iterable[RawFile]) -> None:
    """Remove unpinned downloads whose data failed validation, so no retry parses them."""
    for r in raw:
        if r.unpinned and r.download is not None:
            log.warning("%s: removed, its data did not validate", r.download)
            _discard(r.download.parent, r.source)


def pin_validated(raw: Iterable[RawFile], lock: Lock, dataset: str) -> None:
    """Record the SHA-256 of unpinned downloads whose data validated in the lock file."""
    for r in raw:
        if not (r.unpinned and r.download is not None and r.published_hash):
            continue
        digest = r.published_hash.split(":", 1)[1]
        try:
            size = r.download.stat().st_size
            lock.record(r.source.location, digest, dataset=dataset, size=size)
        except OSError as exc:
            # The converted data is good; only the next download goes unverified.
            log.warning("%s: cannot record %s in %s: %s", dataset, digest, lock.path, exc)
            continue
        log.info(
            "%s: validated; recorded SHA-256 %s of %s in %s (add it to the registry as"
            " `hash: sha256:%s` to pin it for everyone)",
            dataset,
            digest,
            r.source.location,
            lock.path,
            digest,
        )
