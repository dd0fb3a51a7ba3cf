"""Bottleneck adapters (Houlsby et al., 2019), written by hand: PEFT has none (its "adaption prompt" is LLaMA-Adapter, a
prompt method), and AdapterHub's ``adapters`` library pins transformers 4 (1.3 requires ``transformers~=4.57``).

An adapter maps a block's output ``h`` (hidden size d) to ``h + up(act(down(h)))``: a down-projection to a bottleneck of
width m, a nonlinearity, an up-projection back to d that starts at zero — so the adapted model starts exactly as the base
— and a residual connection. One adapter follows the attention block and one the MLP block of every decoder layer, on
the block's output before the layer adds it to its residual stream. They are attached with forward hooks: the base
model's modules and weights stay as they are. Each adapter has 2·d·m + d + m parameters (weights and biases). Being
nonlinear, an adapter cannot be merged into the weights: it costs two small matrix products per block at inference.

>>> add_bottleneck_adapters(model, BottleneckConfig(size=16))   # the base frozen, 2 adapters per layer trainable
>>> save_bottleneck_adapters(model, folder, "embedded"); load_bottleneck_adapters(load_model("embedded"), folder)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_bytes, atomic_write_json

__all__ = [
    "ACTIVATIONS", "add_bottleneck_adapters", "adapted_blocks", "BOTTLENECK_CONFIG", "BOTTLENECK_WEIGHTS", "BottleneckAdapter",
    "BottleneckConfig", "has_bottleneck_adapters", "is_bottleneck_dir",
    "load_bottleneck_adapters", "load_bottleneck_weights", "save_bottleneck_adapters",
]

#: The adapters' settings and base model, in a saved folder.
BOTTLENECK_CONFIG = "bottleneck_config.json"
#: The adapters' weights (their names in the model's state dict), in a saved folder.
BOTTLENECK_WEIGHTS = "bottleneck_adapter.safetensors"
#: Nonlinearities an adapter can use, by name.
ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU}
#: Model type -> the decoder layer's attributes that hold its attention block and its MLP block (others: Llama's names).
_BLOCKS = {"opt": ("self_attn", "fc2"), "gpt2": ("attn", "mlp"), "gpt_neox": ("attention", "mlp")}
_LLAMA_BLOCKS = ("self_attn", "mlp")
#: The name each adapter has as a child of the block it follows.
_CHILD = "bottleneck_adapter"


@dataclass(frozen=True)
class BottleneckConfig:
    """Bottleneck width ``size`` (m) and the nonlinearity (a name of :data:`ACTIVATIONS`)."""

    size: int = 16
    activation: str = "silu"

    def __post_init__(self) -> None:
        if type(self.size) is not int or self.size < 1:
            raise CourseError(f"Bottleneck size {self.size!r} is not a whole number of at least 1.", "use e.g. size=16.")
        if self.activation not in ACTIVATIONS:
            raise CourseError(f"Unknown adapter activation {self.activation!r}.", f"use one of: {', '.join(ACTIVATIONS)}.")


class BottleneckAdapter(torch.nn.Module):
    """``h + up(act(down(h)))`` with ``up`` zero at initialisation; computed in the adapter's dtype, returned in ``h``'s."""

    def __init__(self, hidden_size: int, config: BottleneckConfig, device: torch.device | str | None = None):
        super().__init__()
        self.down = torch.nn.Linear(hidden_size, config.size, device=device, dtype=torch.float32)
        self.act = ACTIVATIONS[config.activation]()
        self.up = torch.nn.Linear(config.size, hidden_size, device=device, dtype=torch.float32)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden.to(self.down.weight.dtype)))).to(hidden.dtype)


def _adapt_output(block: torch.nn.Module, args: tuple, output):
    """Forward hook: the block's output (the first element when it returns a tuple) through the block's adapter."""
    adapter = getattr(block, _CHILD)
    if isinstance(output, tuple):
        return (adapter(output[0]), *output[1:])
    return adapter(output)


def adapted_blocks(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The blocks an adapter follows, by full name: each decoder layer's attention block, then its MLP block."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    attention, mlp = _BLOCKS.get(model_type, _LLAMA_BLOCKS)
    blocks = {}
    for name, module in model.named_modules():
        first, second = getattr(module, attention, None), getattr(module, mlp, None)
        if isinstance(first, torch.nn.Module) and isinstance(second, torch.nn.Module):
            blocks[f"{name}.{attention}"], blocks[f"{name}.{mlp}"] = first, second
    if not blocks:
        raise CourseError(f"No decoder layer of this {model_type or type(model).__name__} has the blocks {attention!r} and {mlp!r}.",
                          "bottleneck adapters know Llama-style models (self_attn, mlp), OPT, GPT-2 and GPT-NeoX; use lora for this model.")
    return blocks


def has_bottleneck_adapters(model: torch.nn.Module) -> bool:
    """True when :func:`add_bottleneck_adapters` (or a load) put adapters into ``model``."""
    return any(isinstance(m, BottleneckAdapter) for m in model.modules())


def add_bottleneck_adapters(model: torch.nn.Module, config: BottleneckConfig) -> torch.nn.Module:
    """Freeze ``model`` and add a trainable adapter after each attention and MLP block (in place; returns ``model``).

    Each adapter is a child of its block (``...self_attn.bottleneck_adapter``), on the block's device, in float32.
    """
    if has_bottleneck_adapters(model):
        raise CourseError("This model already has bottleneck adapters.", "load the base model again before adding new ones.")
    hidden = model.config.hidden_size
    if config.size > hidden:
        raise CourseError(f"Bottleneck size {config.size} is wider than the model's hidden size {hidden}: no bottleneck.",
                          f"use a size below {hidden} (e.g. {max(1, hidden // 16)}, a sixteenth of it).")
    model.requires_grad_(False)
    for block in adapted_blocks(model).values():
        adapter = BottleneckAdapter(hidden, config, device=next(block.parameters()).device)
        block.add_module(_CHILD, adapter.train(block.training))
        block.register_forward_hook(_adapt_output)
    model.bottleneck_config = config  # what save_bottleneck_adapters records
    return model


def save_bottleneck_adapters(model: torch.nn.Module, folder: str | Path, base_model: str,
                             state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write the adapters' weights (:data:`BOTTLENECK_WEIGHTS`) and config (:data:`BOTTLENECK_CONFIG`, naming ``base_model``)
    into ``folder``, each file atomically. ``state_dict``: the model's full state dict when a launcher gathered it."""
    if not has_bottleneck_adapters(model):
        raise CourseError("This model has no bottleneck adapters to save.", "add them with add_bottleneck_adapters (fine_tune(method='adapter')).")
    weights = {k: v.detach().to("cpu").contiguous() for k, v in (state_dict or model.state_dict()).items() if f".{_CHILD}." in k}
    folder = Path(folder)
    atomic_write_bytes(folder / BOTTLENECK_WEIGHTS, safetensors_bytes(weights))
    atomic_write_json(folder / BOTTLENECK_CONFIG, {**asdict(model.bottleneck_config), "base_model_name_or_path": base_model,
                                                   "hidden_size": model.config.hidden_size, "blocks": sorted(adapted_blocks(model))})


def is_bottleneck_dir(path: str | Path) -> bool:
    """True when ``path`` holds adapters saved by :func:`save_bottleneck_adapters`."""
    return (Path(path) / BOTTLENECK_CONFIG).is_file()


def _saved_config(folder: Path) -> dict:
    try:
        return json.loads((folder / BOTTLENECK_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CourseError(f"Cannot read {folder / BOTTLENECK_CONFIG} ({exc}).", "pass a folder written by fine_tune(method='adapter').") from None


def load_bottleneck_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Copy the weights saved in ``folder`` into ``model``'s adapters (the same names); a :class:`CourseError` when they differ."""
    file = Path(folder) / BOTTLENECK_WEIGHTS
    weights = load_file(str(file))
    expected = {k for k in model.state_dict() if f".{_CHILD}." in k}
    if set(weights) != expected:
        raise CourseError(f"{file} does not hold this model's adapters ({len(set(weights) - expected)} unknown tensors, "
                          f"{len(expected - set(weights))} missing).", "load them onto the base model they were trained on.")
    model.load_state_dict(weights, strict=False)


def load_bottleneck_adapters(model: torch.nn.Module, folder: str | Path, trainable: bool = False) -> torch.nn.Module:
    """Add the adapters saved in ``folder`` to the base ``model`` (in place; returns it), frozen unless ``trainable``.

    The base must have the hidden size the adapters were trained on; otherwise a :class:`CourseError`.
    """
    folder = Path(folder)
    saved = _saved_config(folder)
    if saved.get("hidden_size") != model.config.hidden_size:
        raise CourseError(f"The adapters in {folder} were trained on a model of hidden size {saved.get('hidden_size')}, "
                          f"not {model.config.hidden_size}.", f"load them onto their base model, {saved.get('base_model_name_or_path')!r}.")
    add_bottleneck_adapters(model, BottleneckConfig(size=saved["size"], activation=saved["activation"]))
    load_bottleneck_weights(model, folder)
    for name, parameter in model.named_parameters():
        if f".{_CHILD}." in name:
            parameter.requires_grad_(trainable)
    return model
