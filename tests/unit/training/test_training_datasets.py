"""Data set URIs: parsing, redaction, and loading from files, HTTP and builtin sets."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import threading
from pathlib import Path

import pandas as pd
import pytest

from modelship.training.datasets import DatasetRef, load_dataset, parse_uri, redact_uri
from modelship.training.errors import InvalidInput


@pytest.mark.parametrize(
    ("uri", "fmt", "expected"),
    [
        ("file:///data/x.csv", "auto", DatasetRef("file", "/data/x.csv", "csv")),
        ("file:///data/my%20x.parquet", "auto", DatasetRef("file", "/data/my x.parquet", "parquet")),
        ("/data/x.pq", "auto", DatasetRef("file", "/data/x.pq", "parquet")),
        ("data/x.csv.gz", "auto", DatasetRef("file", "data/x.csv.gz", "csv", "gzip")),
        ("https://h.example/d/x.csv?sig=abc", "auto", DatasetRef("http", "https://h.example/d/x.csv?sig=abc", "csv")),
        ("http://h.example/export", "auto", DatasetRef("http", "http://h.example/export", "csv")),
        ("https://h.example/export", "parquet", DatasetRef("http", "https://h.example/export", "parquet")),
        ("s3://bucket/k/train.parquet", "auto", DatasetRef("s3", "s3://bucket/k/train.parquet", "parquet")),
        ("gs://bucket/train.csv.bz2", "auto", DatasetRef("gs", "gs://bucket/train.csv.bz2", "csv", "bz2")),
        ("builtin:sklearn/iris", "auto", DatasetRef("builtin", "sklearn/iris", "frame")),
        ("builtin:sklearn/diabetes", "auto", DatasetRef("builtin", "sklearn/diabetes", "frame")),
    ],
)
def test_parse_uri(uri, fmt, expected):
    assert parse_uri(uri, fmt) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://h/x.csv", "unsupported scheme ftp://"),
        ("builtin:sklearn/california_housing", "downloads this set at run time"),
        ("builtin:sklearn/nope", "unknown builtin data set; one of builtin:sklearn/diabetes"),
        ("file:///data/", "names no file"),
        ("", "empty"),
    ],
)
def test_parse_uri_rejects(uri, message):
    with pytest.raises(InvalidInput, match=message.replace("/", "/")):
        parse_uri(uri)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://user:secret@h.example/x.csv", "https://***@h.example/x.csv"),
        ("https://h.example/x.csv?X-Amz-Signature=abc", "https://h.example/x.csv?…"),
        ("s3://bucket/x.csv", "s3://bucket/x.csv"),
        ("builtin:sklearn/iris", "builtin:sklearn/iris"),
        ("/plain/path.csv", "/plain/path.csv"),
    ],
)
def test_redact_uri(uri, shown):
    assert redact_uri(uri) == shown


def test_csv_and_parquet_load_with_a_hash_of_the_bytes(tmp_path: Path):
    frame = pd.DataFrame({"a": [1.0, 2.0, None], "b": ["x", "y", "z"]})
    csv = tmp_path / "d.csv"
    frame.to_csv(csv, index=False)
    loaded = load_dataset(f"file://{csv}")
    assert list(loaded.frame.columns) == ["a", "b"] and len(loaded.frame) == 3
    assert loaded.sha256 == "sha256:" + hashlib.sha256(csv.read_bytes()).hexdigest()
    parquet = tmp_path / "d.parquet"
    frame.to_parquet(parquet)
    assert load_dataset(str(parquet)).frame["b"].tolist() == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (b"a,b,target\n", "has no rows"),
    ],
)
def test_empty_files(tmp_path: Path, content, message):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        load_dataset(f"file://{path}")


def test_missing_file_and_bad_parquet(tmp_path: Path):
    with pytest.raises(InvalidInput, match=r"^dataset file:///nonexistent.csv: no such file$"):
        load_dataset("file:///nonexistent.csv")
    bad = tmp_path / "d.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInput, match="cannot parse as parquet"):
        load_dataset(f"file://{bad}")


def test_size_cap(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n" + "1,2\n" * 1000)
    with pytest.raises(InvalidInput, match="larger than the limit of 0 MiB"):
        load_dataset(str(path), max_bytes=100)


def test_closed_local_port_is_unreachable():
    with pytest.raises(InvalidInput, match=r"^dataset https://127.0.0.1:9/x.csv is unreachable: connection refused$"):
        load_dataset("https://127.0.0.1:9/x.csv")


@pytest.fixture
def http_dir(tmp_path: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_download_capped_and_404(http_dir):
    root, base = http_dir
    (root / "d.csv").write_text("a,b\n" + "1,2\n" * 2000)
    loaded = load_dataset(f"{base}/d.csv")
    assert len(loaded.frame) == 2000 and loaded.bytes_read == (root / "d.csv").stat().st_size
    with pytest.raises(InvalidInput, match="larger than the limit"):
        load_dataset(f"{base}/d.csv", max_bytes=1000)
    with pytest.raises(InvalidInput, match="HTTP 404"):
        load_dataset(f"{base}/missing.csv")


def test_builtin_classification_sets_use_class_names():
    loaded = load_dataset("builtin:sklearn/iris")
    assert set(loaded.frame["target"]) == {"setosa", "versicolor", "virginica"}
    assert loaded.sha256 == load_dataset("builtin:sklearn/iris").sha256
    assert load_dataset("builtin:sklearn/diabetes").frame["target"].dtype.kind == "f"


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_s3_without_s3fs_names_the_package():
    with pytest.raises(InvalidInput, match=r"s3:// needs the package s3fs.*modelship\[s3\]"):
        load_dataset("s3://bucket/train.csv")
