"""Weights registry, cache, resumable verified downloads (against a server on 127.0.0.1)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import recipes
from audiorep import weights
from audiorep.cli import weights as cli_weights
from audiorep.convert import vggish as cv

pytestmark = pytest.mark.network  # serves files on 127.0.0.1 only

PAYLOAD = np.random.default_rng(1234).bytes(3 * 2**20 + 12345)  # a few MB, odd length
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
HAS_TF = importlib.util.find_spec("tensorflow") is not None


# ----------------------------------------------------------------------------- test server


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=a-[b]``; logs every request.

    ``server.fail_after[name] = n`` makes the next response for ``name`` announce the full
    length, send only ``n`` body bytes and drop the connection (once).
    """

    honour_range = True

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv: TestServer = self.server.owner  # type: ignore[attr-defined]
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        entry: dict[str, Any] = {"path": name, "range": rng, "status": None, "sent": 0}
        srv.log.append(entry)
        data = srv.files.get(name)
        if data is None:
            entry["status"] = 404
            self.send_error(404)
            return
        status, body = 200, data
        headers = {"Content-Type": "application/octet-stream"}
        if self.honour_range:
            headers["Accept-Ranges"] = "bytes"
        if rng and self.honour_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            assert m, rng
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            if start >= len(data):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
        headers["Content-Length"] = str(len(body))
        entry["status"] = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        limit = srv.fail_after.pop(name, None)
        if limit is not None:
            body = body[:limit]
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()
        entry["sent"] = len(body)


class IgnoreRangeHandler(RangeHandler):
    """A server that always answers 200 with the whole file."""

    honour_range = False


class TestServer:
    __test__ = False  # not a test class

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.files: dict[str, bytes] = {}
        self.fail_after: dict[str, int] = {}
        self.log: list[dict[str, Any]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        # A short poll interval keeps shutdown() (and so each test's teardown) quick.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def requests_for(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log if e["path"] == name]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[TestServer]:
    srv = TestServer(RangeHandler)
    srv.files["model.bin"] = PAYLOAD
    yield srv
    srv.close()


@pytest.fixture
def ignoring_server() -> Iterator[TestServer]:
    srv = TestServer(IgnoreRangeHandler)
    srv.files["model.bin"] = PAYLOAD
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets an empty cache and network-enabled mode."""
    home = tmp_path / "cache"
    monkeypatch.setenv("AUDIOREP_HOME", str(home))
    monkeypatch.delenv("AUDIOREP_OFFLINE", raising=False)
    return home


@pytest.fixture
def no_network(monkeypatch) -> None:
    """Fail loudly if anything tries to open a URL."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unexpected network access: {args[0]!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def add_entry(monkeypatch, name: str, urls: tuple[str, ...], **kw: Any) -> weights.WeightsEntry:
    entry = weights.WeightsEntry(
        name=name,
        urls=urls,
        filename=kw.pop("filename", "model.bin"),
        sha256=kw.pop("sha256", PAYLOAD_SHA),
        sha256_prefix=kw.pop("sha256_prefix", None),
        size=kw.pop("size", None),
        licence="test",
        description="test entry",
        kind=kw.pop("kind", "model"),
        converter="none",
        **kw,
    )
    monkeypatch.setitem(weights.REGISTRY, name, entry)
    return entry


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="audiorep")
    sub = parser.add_subparsers(dest="command")
    cli_weights.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


# ----------------------------------------------------------------------------- download


def test_download_good_hash(server, tmp_path):
    dst = tmp_path / "d" / "model.bin"
    out = weights.download(server.url("model.bin"), dst, sha256=PAYLOAD_SHA, progress=False)
    assert out == dst
    assert dst.read_bytes() == PAYLOAD
    assert not dst.with_name("model.bin.part").exists()
    # A prefix pin (torch.hub file-name convention) is enough too; uppercase is fine.
    dst2 = tmp_path / "model2.bin"
    weights.download(
        server.url("model.bin"), dst2, sha256_prefix=PAYLOAD_SHA[:8].upper(), progress=False
    )
    assert dst2.read_bytes() == PAYLOAD


@pytest.mark.parametrize("pin", ["sha256", "sha256_prefix"])
def test_download_bad_hash_fails_and_leaves_nothing(server, tmp_path, pin):
    dst = tmp_path / "model.bin"
    wrong = "0" * 64 if pin == "sha256" else "deadbeef"
    with pytest.raises(weights.ChecksumError) as e:
        weights.download(server.url("model.bin"), dst, progress=False, **{pin: wrong})
    msg = str(e.value)
    assert wrong in msg
    assert PAYLOAD_SHA in msg
    assert server.url("model.bin") in msg
    assert not dst.exists()
    assert not dst.with_name("model.bin.part").exists()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    n = 1_000_000
    server.fail_after["model.bin"] = n
    dst = tmp_path / "model.bin"
    part = dst.with_name("model.bin.part")
    with pytest.raises(weights.DownloadError, match="run again to resume"):
        weights.download(
            server.url("model.bin"), dst, sha256=PAYLOAD_SHA, progress=False, retries=0
        )
    assert not dst.exists()
    assert part.stat().st_size == n

    weights.download(server.url("model.bin"), dst, sha256=PAYLOAD_SHA, progress=False)
    assert dst.read_bytes() == PAYLOAD
    assert not part.exists()
    first, second = server.requests_for("model.bin")
    assert first["range"] is None
    assert first["sent"] == n
    # Only the remainder was fetched.
    assert second["range"] == f"bytes={n}-"
    assert second["status"] == 206
    assert second["sent"] == len(PAYLOAD) - n


def test_interruption_is_resumed_within_one_call(server, tmp_path):
    server.fail_after["model.bin"] = 123_456
    dst = tmp_path / "model.bin"
    weights.download(server.url("model.bin"), dst, sha256=PAYLOAD_SHA, progress=False)
    assert dst.read_bytes() == PAYLOAD
    assert [e["range"] for e in server.requests_for("model.bin")] == [None, "bytes=123456-"]


def test_server_ignoring_range_restarts_cleanly(ignoring_server, tmp_path):
    dst = tmp_path / "model.bin"
    part = dst.with_name("model.bin.part")
    part.write_bytes(b"junk that must not end up in the file" * 1000)
    weights.download(ignoring_server.url("model.bin"), dst, sha256=PAYLOAD_SHA, progress=False)
    assert dst.read_bytes() == PAYLOAD
    (req,) = ignoring_server.requests_for("model.bin")
    assert req["range"] is not None  # we asked to resume ...
    assert req["status"] == 200  # ... and were sent the whole file
    assert req["sent"] == len(PAYLOAD)


def test_complete_part_is_finished_without_refetching(server, tmp_path):
    dst = tmp_path / "model.bin"
    dst.with_name("model.bin.part").write_bytes(PAYLOAD)
    weights.download(server.url("model.bin"), dst, sha256=PAYLOAD_SHA, progress=False)
    assert dst.read_bytes() == PAYLOAD
    (req,) = server.requests_for("model.bin")
    assert req["status"] == 416
    assert req["sent"] == 0


def test_http_error_is_not_retried(server, tmp_path):
    with pytest.raises(weights.DownloadError, match="HTTP 404"):
        weights.download(server.url("missing.bin"), tmp_path / "x", progress=False)
    assert len(server.requests_for("missing.bin")) == 1


def test_unpinned_download_warns_with_digest(server, tmp_path):
    with pytest.warns(weights.UnpinnedWeightsWarning, match=PAYLOAD_SHA):
        weights.download(server.url("model.bin"), tmp_path / "model.bin", progress=False)
    assert (tmp_path / "model.bin").read_bytes() == PAYLOAD


def test_offline_download_refuses(server, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    dst = tmp_path / "model.bin"
    with pytest.raises(weights.OfflineError, match="AUDIOREP_OFFLINE=1") as e:
        weights.download(server.url("model.bin"), dst, progress=False)
    assert str(dst) in str(e.value)
    assert server.log == []


# ----------------------------------------------------------------------------- cache / fetch


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path / "h"))
    assert weights.cache_dir() == tmp_path / "h"
    monkeypatch.delenv("AUDIOREP_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "audiorep"


def test_fetch_downloads_once_then_hits_the_cache(server, monkeypatch, isolated_cache):
    add_entry(monkeypatch, "test-model", (server.url("model.bin"),))
    path = weights.fetch("test-model", progress=False)
    assert path == isolated_cache / "test-model" / "model.bin"
    assert path.read_bytes() == PAYLOAD
    assert len(server.log) == 1
    assert weights.fetch("test-model", progress=False) == path
    assert len(server.log) == 1  # cache hit: the server was not contacted
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    assert weights.fetch("test-model", progress=False) == path  # offline is fine once cached
    assert len(server.log) == 1


def test_fetch_tries_mirrors_in_order(server, monkeypatch):
    add_entry(monkeypatch, "test-model", (server.url("gone.bin"), server.url("model.bin")))
    assert weights.fetch("test-model", progress=False).read_bytes() == PAYLOAD
    assert [e["path"] for e in server.log] == ["gone.bin", "model.bin"]


def test_fetch_replaces_a_corrupt_cached_file(server, monkeypatch):
    add_entry(monkeypatch, "test-model", (server.url("model.bin"),))
    path = weights.cached_path("test-model")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"corrupt")
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    with pytest.raises(weights.ChecksumError, match="fails its checksum"):
        weights.fetch("test-model", progress=False)
    monkeypatch.delenv("AUDIOREP_OFFLINE")
    assert weights.fetch("test-model", progress=False).read_bytes() == PAYLOAD


def test_md5_only_entries_are_verified(server, monkeypatch, tmp_path):
    """SpecVQGAN publishes only MD5s: downloads, cached files and `verify` check them."""
    import hashlib

    good = hashlib.md5(PAYLOAD).hexdigest()
    dst = tmp_path / "m.bin"
    weights.download(server.url("model.bin"), dst, md5=good.upper(), progress=False)
    assert dst.read_bytes() == PAYLOAD
    with pytest.raises(weights.ChecksumError, match="md5 mismatch") as e:
        weights.download(server.url("model.bin"), tmp_path / "x.bin", md5="0" * 32, progress=False)
    assert good in str(e.value) and not (tmp_path / "x.bin.part").exists()
    add_entry(monkeypatch, "md5-model", (server.url("model.bin"),), sha256=None, md5=good)
    path = weights.fetch("md5-model", progress=False)
    assert path.read_bytes() == PAYLOAD and weights.verify("md5-model")["ok"]
    path.write_bytes(b"corrupt")  # a damaged cached copy is caught by its MD5
    report = weights.verify("md5-model")
    assert not report["ok"] and report["message"] == "MD5 MISMATCH"
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    with pytest.raises(weights.ChecksumError, match=f"md5 {good}"):
        weights.fetch("md5-model", progress=False)


def test_fetch_offline_says_where_to_put_the_file(server, monkeypatch, isolated_cache):
    add_entry(monkeypatch, "test-model", (server.url("model.bin"),))
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    with pytest.raises(weights.OfflineError) as e:
        weights.fetch("test-model")
    msg = str(e.value)
    assert str(isolated_cache / "test-model" / "model.bin") in msg
    assert server.url("model.bin") in msg
    assert "--weights PATH" in msg
    assert server.log == []


def test_fetch_unknown_name():
    with pytest.raises(KeyError, match="vggish-tf"):
        weights.fetch("no-such-weights")


def test_bundled_file_that_fails_its_checksum_is_refused(tmp_path, monkeypatch):
    import dataclasses

    from audiorep.weights import registry

    entry = registry.REGISTRY["audiorep-codec-small"]
    bad = tmp_path / "codec_small.safetensors"
    bad.write_bytes(b"tampered")
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path)
    with pytest.raises(weights.ChecksumError, match="reinstall audiorep"):
        weights.fetch(entry.name)
    monkeypatch.setitem(registry.REGISTRY, entry.name, dataclasses.replace(entry, bundled="gone"))
    with pytest.raises(weights.WeightsError, match="missing from this install"):
        weights.fetch(entry.name)


def test_registry_entries_are_consistent():
    assert {"vggish-tf", "vggish-pca-tf", "vggish-torchvggish", "vggish-pca-torchvggish"} <= set(
        weights.REGISTRY
    )
    for name, e in weights.REGISTRY.items():
        assert e.name == name
        assert e.kind in ("model", "pca")
        assert e.urls or e.bundled  # bundled files ship in the package: nothing to download
        assert all(u.startswith("https://") for u in e.urls)
        if e.bundled:  # a bundled file is always pinned and present, with its exact size
            path = weights.cached_path(name)
            assert e.sha256 and path.is_file() and path.stat().st_size == e.size
            assert weights.fetch(name) == path
        assert all(c in weights.REGISTRY for c in e.companions)
        if e.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", e.sha256)
        if e.sha256 and e.sha256_prefix:
            assert e.sha256.startswith(e.sha256_prefix)
        # torch.hub names carry the digest prefix: keep it in sync with the pin.
        m = re.search(r"-([0-9a-f]{8})\.\w+$", e.filename)
        if m:
            assert e.sha256_prefix == m.group(1)
    tv = weights.REGISTRY["vggish-torchvggish"]
    assert tv.sha256_prefix == "10086976"
    assert weights.REGISTRY["vggish-pca-torchvggish"].sha256_prefix == "970ea276"
    assert weights.REGISTRY["vggish-tf"].urls == (
        "https://storage.googleapis.com/audioset/vggish_model.ckpt",
    )


def test_verify_names_and_paths(server, monkeypatch, tmp_path):
    add_entry(monkeypatch, "test-model", (server.url("model.bin"),))
    r = weights.verify("test-model")
    assert r["exists"] is False
    assert r["ok"] is False
    weights.fetch("test-model", progress=False)
    r = weights.verify("test-model")
    assert r["ok"] is True
    assert r["sha256"] == PAYLOAD_SHA
    assert r["size"] == len(PAYLOAD)

    other = tmp_path / "other.bin"
    other.write_bytes(b"abc")
    r = weights.verify(other)
    assert r["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert r["size"] == 3
    assert r["ok"] is True
    assert r["pinned"] is False

    # A file named like a pinned registry file is checked against that pin.
    fake = tmp_path / "vggish-10086976.pth"
    fake.write_bytes(b"not the real weights")
    r = weights.verify(fake)
    assert r["name"] == "vggish-torchvggish"
    assert r["ok"] is False

    with pytest.raises(FileNotFoundError, match="neither a registry name"):
        weights.verify(tmp_path / "nothing-here")


# ----------------------------------------------------------------------------- resolve


def _pca_pth_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({k: torch.from_numpy(v) for k, v in recipes.vggish_pca_params().items()}, buf)
    return buf.getvalue()


def _unpin(monkeypatch, name: str, **changes: Any) -> None:
    entry = weights.REGISTRY[name]
    changes.setdefault("sha256", None)
    changes.setdefault("sha256_prefix", None)
    monkeypatch.setitem(weights.REGISTRY, name, dataclasses.replace(entry, **changes))


def test_resolve_auto_with_empty_cache_downloads_nothing(no_network, isolated_cache):
    model, pca, reason = weights.resolve_vggish_weights(None)
    assert model is None
    assert pca is None
    assert str(isolated_cache) in reason
    assert "--weights PATH" in reason
    assert weights.resolve_vggish_weights("auto")[:2] == (None, None)


def test_resolve_auto_converts_cached_raw_files(no_network, monkeypatch):
    # Fake torchvggish downloads in the cache (unpinned, since they are not the real files).
    _unpin(monkeypatch, "vggish-torchvggish")
    _unpin(monkeypatch, "vggish-pca-torchvggish")
    raw = weights.cached_path("vggish-torchvggish")
    raw.parent.mkdir(parents=True)
    torch.manual_seed(0)
    # Expanded tensors: full shapes, tiny file; only conversion materialises them.
    sd = {k: torch.randn(()).expand(s) for k, s in cv.TORCHVGGISH_SHAPES.items()}
    torch.save(sd, raw)
    pca_raw = weights.cached_path("vggish-pca-torchvggish")
    pca_raw.parent.mkdir(parents=True)
    pca_raw.write_bytes(_pca_pth_bytes())

    model, pca, desc = weights.resolve_vggish_weights(None)
    assert model is not None
    assert pca is not None
    assert torch.equal(model["fc2.weight"], sd["embeddings.4.weight"])
    converted = weights.converted_path("vggish-torchvggish")
    assert converted.is_file()
    assert str(converted) in desc

    # The converted file is used next time, even with the raw files gone.
    raw.unlink()
    model2, pca2, desc2 = weights.resolve_vggish_weights("auto")
    assert torch.equal(model2["fc2.weight"], model["fc2.weight"])
    assert torch.equal(pca2["pca_means"], pca["pca_means"])
    assert desc2 == f"vggish-torchvggish: {converted}"


def test_planted_converted_weights_are_not_trusted(no_network, monkeypatch, capsys):
    """Issue 12 item 9: a file placed at the converted-cache path (here seeded random weights
    under the pretrained name) used to be loaded and reported as the pretrained model."""
    from audiorep.models.vggish import seeded_random_state_dict

    planted = weights.converted_path("vggish-torchvggish")
    cv.write_safetensors(planted, seeded_random_state_dict(5), None, source="planted")
    with pytest.warns(UserWarning, match="no provenance record"):
        model, pca, reason = weights.resolve_vggish_weights(None)
    assert (model, pca) == (None, None) and "no VGGish weights" in reason
    # `weights verify` reports it and fails
    assert run_cli(["weights", "verify", "vggish-torchvggish"]) == 1
    out = capsys.readouterr().out
    assert "vggish-torchvggish (converted)" in out and "no provenance record" in out


def test_converted_cache_provenance_is_recorded_and_checked(no_network, monkeypatch, capsys):
    _unpin(monkeypatch, "vggish-torchvggish")
    _unpin(monkeypatch, "vggish-pca-torchvggish")
    raw = weights.cached_path("vggish-torchvggish")
    raw.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({k: torch.randn(()).expand(s) for k, s in cv.TORCHVGGISH_SHAPES.items()}, raw)
    pca_raw = weights.cached_path("vggish-pca-torchvggish")
    pca_raw.parent.mkdir(parents=True)
    pca_raw.write_bytes(_pca_pth_bytes())
    weights.resolve_vggish_weights(None)  # converts, records provenance
    from audiorep.weights.vggish import converted_problem, provenance_path

    converted = weights.converted_path("vggish-torchvggish")
    record = json.loads(provenance_path(converted).read_text())
    assert record["converted_sha256"] == weights.sha256_file(converted)
    assert set(record["sources"]) == {raw.name, pca_raw.name}
    assert converted_problem("vggish-torchvggish") is None
    assert run_cli(["weights", "verify", "vggish-torchvggish"]) == 0
    assert "provenance verified" in capsys.readouterr().out
    # tampered after conversion: ignored, and re-converted from the (still cached) raw files
    model, _ = cv.load_any(converted)
    model["fc2.bias"] = model["fc2.bias"] + 1
    cv.write_safetensors(converted, model, None, source="tampered")
    assert "differs" in converted_problem("vggish-torchvggish")
    with pytest.warns(UserWarning, match="ignoring the converted weights"):
        again, _, desc = weights.resolve_vggish_weights(None)
    assert "converted from" in desc and not torch.equal(again["fc2.bias"], model["fc2.bias"])
    assert converted_problem("vggish-torchvggish") is None  # rewritten with a fresh record
    # a pinned source whose recorded digest does not match the registry is refused
    _unpin(monkeypatch, "vggish-torchvggish", sha256="0" * 64)
    assert "does not match the registry" in converted_problem("vggish-torchvggish")


@pytest.mark.skipif(HAS_TF, reason="checks the message shown when TensorFlow is missing")
def test_resolve_auto_explains_a_tf_checkpoint_needs_tensorflow(no_network, monkeypatch):
    raw = weights.cached_path("vggish-tf")
    raw.parent.mkdir(parents=True)
    raw.write_bytes(b"\x00" * 32)
    model, pca, reason = weights.resolve_vggish_weights(None)
    assert (model, pca) == (None, None)
    assert "needs TensorFlow" in reason


@pytest.mark.skipif(HAS_TF, reason="checks the message shown when TensorFlow is missing")
def test_resolve_tf_name_without_tensorflow_fails_before_downloading(no_network):
    with pytest.raises(ImportError, match="vggish-torchvggish"):
        weights.resolve_vggish_weights("vggish-tf")
    assert not weights.cached_path("vggish-tf").exists()


def test_resolve_registry_name_fetches_converts_and_caches(server, monkeypatch):
    data = _pca_pth_bytes()
    server.files["pca.pth"] = data
    _unpin(
        monkeypatch,
        "vggish-pca-torchvggish",
        urls=(server.url("pca.pth"),),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    model, pca, desc = weights.resolve_vggish_weights("vggish-pca-torchvggish")
    assert model is None
    assert pca["pca_eigen_vectors"].shape == (128, 128)
    converted = weights.converted_path("vggish-pca-torchvggish")
    assert converted.is_file()
    assert len(server.log) == 1
    # Second time: the converted cache, no request.
    _, pca2, _ = weights.resolve_vggish_weights("vggish-pca-torchvggish")
    assert torch.equal(pca2["pca_means"], pca["pca_means"])
    assert len(server.log) == 1


def test_resolve_path_and_unknown(tmp_path, no_network):
    npz = tmp_path / "vggish_pca_params.npz"
    np.savez(npz, **recipes.vggish_pca_params())
    model, pca, desc = weights.resolve_vggish_weights(npz)
    assert model is None
    assert pca is not None
    assert desc == str(npz)
    with pytest.raises(FileNotFoundError, match="not a registry name"):
        weights.resolve_vggish_weights("no-such-thing")


# ----------------------------------------------------------------------------- CLI


def test_cli_weights_list(capsys, isolated_cache):
    assert run_cli(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name in weights.REGISTRY:
        assert name in out
    assert "https://storage.googleapis.com/audioset/vggish_model.ckpt" in out
    assert str(isolated_cache) in out


def test_cli_weights_download_and_verify(server, monkeypatch, capsys, tmp_path):
    add_entry(monkeypatch, "test-model", (server.url("model.bin"),))
    assert run_cli(["weights", "download", "test-model", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"test-model: {weights.cached_path('test-model')}" in out

    assert run_cli(["weights", "verify", "test-model"]) == 0
    out = capsys.readouterr().out
    assert PAYLOAD_SHA in out
    assert "checksum matches" in out

    # Not downloaded: a failure when asked for explicitly, a note in the overview.
    assert run_cli(["weights", "verify", "vggish-tf"]) == 1
    assert "not downloaded" in capsys.readouterr().out
    assert run_cli(["weights", "verify"]) == 0

    f = tmp_path / "some.bin"
    f.write_bytes(b"xyz")
    assert run_cli(["weights", "verify", str(f)]) == 0
    assert hashlib.sha256(b"xyz").hexdigest() in capsys.readouterr().out


def test_cli_weights_download_warns_when_unpinned(server, monkeypatch, capsys):
    add_entry(monkeypatch, "test-model", (server.url("model.bin"),), sha256=None)
    assert run_cli(["weights", "download", "test-model", "-q"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: model.bin is not pinned")
    assert PAYLOAD_SHA in err


def test_cli_weights_download_errors(monkeypatch, capsys, no_network):
    assert run_cli(["weights", "download"]) == 2
    assert run_cli(["weights", "download", "nope"]) == 2
    assert "unknown weights nope" in capsys.readouterr().err
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    assert run_cli(["weights", "download", "vggish-tf", "-q"]) == 1
    err = capsys.readouterr().err
    assert "AUDIOREP_OFFLINE=1" in err
    assert "--weights PATH" in err
