"""Loading the training data by URI.

``file://`` (and plain paths), ``http(s)://`` (streamed, size-capped), ``s3://`` and ``gs://``
(through fsspec, when ``modelship[s3]`` / ``modelship[gcs]`` is installed) and ``builtin:`` for
data shipped by scikit-learn. CSV and Parquet, picked by extension unless the spec says.
Every failure the user can fix raises :class:`InvalidInput` with one line naming the URI.
A stable hash of the data goes into the lineage of the version.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable
from urllib.parse import unquote, urlsplit, urlunsplit

from modelship.training.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

#: Largest data set read, in bytes (the whole file is held in memory to hash and parse it).
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
CHUNK = 1024 * 1024
#: (connect, read) timeouts of an HTTP download, in seconds.
HTTP_TIMEOUT = (10, 60)

#: ``builtin:`` names → scikit-learn loader and whether class codes map to class names.
BUILTIN_DATASETS: dict[str, tuple[str, bool]] = {
    "sklearn/diabetes": ("load_diabetes", False),
    "sklearn/breast_cancer": ("load_breast_cancer", True),
    "sklearn/wine": ("load_wine", True),
    "sklearn/iris": ("load_iris", True),
}
#: scikit-learn sets that need a download: not offered as builtin.
DOWNLOADED_DATASETS = {"sklearn/california_housing", "sklearn/covtype", "sklearn/kddcup99", "sklearn/20newsgroups"}

_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz", ".zst": "zstd"}
_PARQUET = {".parquet", ".pq"}
_FSSPEC_EXTRAS = {"s3": ("s3fs", "modelship[s3]"), "gs": ("gcsfs", "modelship[gcs]")}


@dataclass(frozen=True)
class DatasetRef:
    """Where the data is and how to parse it."""

    scheme: str  #: file, http, s3, gs or builtin
    location: str  #: a path, a URL or a builtin name
    format: str  #: csv or parquet (builtin: frame)
    compression: str | None = None


@dataclass
class LoadedDataset:
    frame: pd.DataFrame
    sha256: str  #: ``sha256:<hex>`` of the bytes read (of the frame for builtin data)
    uri: str  #: the URI without credentials or query string
    bytes_read: int | None = None


def redact_uri(uri: str) -> str:
    """The URI without user info and query string (signed URLs carry tokens there)."""
    if uri.startswith("builtin:") or "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def parse_uri(uri: str, fmt: str = "auto") -> DatasetRef:
    """Scheme, location and format of a data set URI; raises InvalidInput for what cannot be read."""
    uri = uri.strip()
    if not uri:
        raise InvalidInput("dataset uri is empty")
    if uri.startswith("builtin:"):
        name = uri.removeprefix("builtin:").strip("/")
        if name in DOWNLOADED_DATASETS:
            raise InvalidInput(f"dataset {uri}: scikit-learn downloads this set at run time, so it is not builtin; host the file and use https:// or file://")
        if name not in BUILTIN_DATASETS:
            raise InvalidInput(f"dataset {uri}: unknown builtin data set; one of {', '.join('builtin:' + n for n in BUILTIN_DATASETS)}")
        return DatasetRef("builtin", name, "frame")
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    scheme = match.group(1).lower() if match else "file"
    if scheme == "file":
        location = unquote(uri[len("file://"):]) if match else uri
        path_for_ext = location
    elif scheme in {"http", "https"}:
        location = uri
        path_for_ext = unquote(urlsplit(uri).path)
    elif scheme in _FSSPEC_EXTRAS:
        location = uri
        path_for_ext = urlsplit(uri).path
    else:
        raise InvalidInput(f"dataset {redact_uri(uri)}: unsupported scheme {scheme}://; use file://, https://, s3://, gs:// or builtin:")
    if not location or location.endswith("/"):
        raise InvalidInput(f"dataset {redact_uri(uri)}: the uri names no file")
    base = path_for_ext.lower()
    compression = None
    for suffix, kind in _COMPRESSION.items():
        if base.endswith(suffix):
            compression, base = kind, base[: -len(suffix)]
            break
    detected = "parquet" if os.path.splitext(base)[1] in _PARQUET else "csv"
    chosen = detected if fmt in (None, "auto") else fmt
    if chosen == "parquet":
        compression = None
    return DatasetRef("http" if scheme in {"http", "https"} else scheme, location, chosen, compression)


# --- readers: bytes from a location, capped ----------------------------------------------


def _too_big(uri: str, max_bytes: int) -> InvalidInput:
    return InvalidInput(f"dataset {redact_uri(uri)} is larger than the limit of {max_bytes // (1024 * 1024)} MiB")


def _read_stream(read: Callable[[int], bytes], uri: str, max_bytes: int) -> bytes:
    buffer = io.BytesIO()
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return buffer.getvalue()
        buffer.write(chunk)
        if buffer.tell() > max_bytes:
            raise _too_big(uri, max_bytes)


def read_file(path: str, uri: str, max_bytes: int) -> bytes:
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise _too_big(uri, max_bytes)
        with open(path, "rb") as handle:
            return _read_stream(handle.read, uri, max_bytes)
    except FileNotFoundError:
        raise InvalidInput(f"dataset {redact_uri(uri)}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"dataset {redact_uri(uri)}: is a directory, not a file") from None
    except PermissionError:
        raise InvalidInput(f"dataset {redact_uri(uri)}: permission denied") from None


def read_http(url: str, max_bytes: int, timeout: tuple[float, float] = HTTP_TIMEOUT) -> bytes:
    """Stream a URL; 4xx and refused connections are the user's to fix, 5xx and timeouts are not."""
    import requests

    shown = redact_uri(url)
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            if 400 <= response.status_code < 500:
                raise InvalidInput(f"dataset {shown}: HTTP {response.status_code} {response.reason}")
            if response.status_code >= 500:
                raise RuntimeError(f"dataset {shown}: HTTP {response.status_code} {response.reason} (server error)")
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise _too_big(url, max_bytes)
            chunks = response.iter_content(CHUNK)
            return _read_stream(lambda _size: next(chunks, b""), url, max_bytes)
    except requests.exceptions.Timeout:
        raise TimeoutError(f"dataset {shown}: timed out") from None
    except requests.exceptions.SSLError as error:
        raise InvalidInput(f"dataset {shown} is unreachable: TLS error ({_short(error)})") from None
    except requests.exceptions.ConnectionError as error:
        raise InvalidInput(f"dataset {shown} is unreachable: {_short(error)}") from None
    except requests.exceptions.InvalidURL as error:
        raise InvalidInput(f"dataset {shown}: invalid URL ({_short(error)})") from None


def _short(error: BaseException) -> str:
    text = str(error)
    for known in ("Connection refused", "Name or service not known", "No route to host", "Temporary failure in name resolution", "Network is unreachable"):
        if known in text:
            return known.lower()
    return text.splitlines()[0][:200] if text else type(error).__name__


def read_fsspec(uri: str, scheme: str, max_bytes: int) -> bytes:
    package, extra = _FSSPEC_EXTRAS[scheme]
    try:
        import fsspec

        with fsspec.open(uri, "rb") as handle:
            return _read_stream(handle.read, uri, max_bytes)
    except ImportError:
        raise InvalidInput(f"dataset {redact_uri(uri)}: {scheme}:// needs the package {package}, not installed in the training image (install {extra})") from None
    except FileNotFoundError:
        raise InvalidInput(f"dataset {redact_uri(uri)}: no such object") from None
    except PermissionError as error:
        raise InvalidInput(f"dataset {redact_uri(uri)}: access denied ({_short(error)})") from None


# --- parsing ------------------------------------------------------------------------------


def parse_bytes(data: bytes, ref: DatasetRef, uri: str) -> pd.DataFrame:
    import pandas as pd

    shown = redact_uri(uri)
    if not data.strip():
        raise InvalidInput(f"dataset {shown} is empty")
    try:
        if ref.format == "parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), compression=ref.compression, low_memory=False)
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"dataset {shown} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError) as error:
        raise InvalidInput(f"dataset {shown}: cannot parse as {ref.format}: {_short(error)}") from None
    except Exception as error:  # pyarrow's ArrowInvalid and friends
        if type(error).__module__.startswith("pyarrow"):
            raise InvalidInput(f"dataset {shown}: cannot parse as {ref.format}: {_short(error)}") from None
        raise
    if frame.empty:
        raise InvalidInput(f"dataset {shown} has no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def load_builtin(name: str) -> pd.DataFrame:
    import sklearn.datasets

    loader, named_classes = BUILTIN_DATASETS[name]
    bunch = getattr(sklearn.datasets, loader)(as_frame=True)
    frame = bunch.frame.copy()
    if named_classes:
        names = list(bunch.target_names)
        frame["target"] = [str(names[int(code)]) for code in frame["target"]]
    return frame


def frame_hash(frame: pd.DataFrame) -> str:
    import pandas as pd

    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def load_dataset(uri: str, fmt: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES) -> LoadedDataset:
    """Read a data set; every problem the user can fix raises InvalidInput."""
    ref = parse_uri(uri, fmt)
    if ref.scheme == "builtin":
        frame = load_builtin(ref.location)
        return LoadedDataset(frame, frame_hash(frame), uri)
    if ref.scheme == "file":
        data = read_file(ref.location, uri, max_bytes)
    elif ref.scheme == "http":
        data = read_http(ref.location, max_bytes)
    else:
        data = read_fsspec(ref.location, ref.scheme, max_bytes)
    frame = parse_bytes(data, ref, uri)
    return LoadedDataset(frame, "sha256:" + hashlib.sha256(data).hexdigest(), redact_uri(uri), len(data))
