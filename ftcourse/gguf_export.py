"""Write a Llama-architecture model to GGUF, the file format of llama.cpp and Ollama, with the ``gguf`` package's writer.

What llama.cpp's ``convert_hf_to_gguf.py`` does for a Llama model, in the parts a course model needs: tensor names
from ``gguf``'s own name table, the query and key weights permuted to llama.cpp's rotary layout (transformers' GGUF loader
undoes it), the tokenizer as metadata (tokens, token types, merges, special ids, chat template), 2-D weights in F32,
F16 or Q8_0 and the norms in F32. The file is written next to its target and renamed into place. Load it back with
:func:`load_gguf` and :func:`load_gguf_tokenizer` (transformers' ``gguf_file=``) and compare logits with :func:`ftcourse.deploy.logits_on`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_file

__all__ = ["GGUF_TYPES", "gguf_tensor_name", "load_gguf", "load_gguf_tokenizer", "ollama_modelfile", "permute_qk", "write_gguf"]

#: The tensor types :func:`write_gguf` writes, with llama.cpp's name for a file of mostly that type.
GGUF_TYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "Q8_0": "MOSTLY_Q8_0"}


def gguf_tensor_name(name: str, n_layers: int) -> str:
    """The GGUF name of a Llama weight (``model.layers.3.self_attn.q_proj.weight`` -> ``blk.3.attn_q.weight``), from ``gguf``'s table."""
    import gguf

    found = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers).get_name(name, try_suffixes=(".weight", ".bias"))
    if found is None:
        raise CourseError(f"The weight {name!r} has no name in llama.cpp's Llama architecture.",
                          "export a plain Llama-architecture model (merge adapters first: ftcourse.deploy.merge_adapter).")
    return found


def permute_qk(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's order of the rows of a query or key weight: each head's two rotary halves interleaved.

    transformers rotates the first half of a head's dimensions against the second; llama.cpp rotates neighbouring pairs.
    ``n_heads`` is the number of heads of this weight (key/value heads for the key).
    """
    half = weight.shape[0] // n_heads // 2
    return weight.reshape(n_heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _tensor_data(weight: np.ndarray, kind: str):
    """``(data, raw_dtype)`` for the writer: 1-D tensors and rows that do not fill Q8_0's 32-value blocks stay float."""
    import gguf

    if weight.ndim == 1 or kind == "F32":
        return weight.astype(np.float32), None
    if kind == "Q8_0" and weight.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.quants.quantize(weight.astype(np.float32), gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return weight.astype(np.float16), None


def _add_tokenizer(writer, tokenizer, pre: str) -> None:
    """The tokenizer as llama.cpp's metadata: byte-level BPE tokens in id order, their types, the merges, special ids."""
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise CourseError("write_gguf writes byte-level BPE tokenizers (GPT-2 style) only.",
                          "convert other tokenizers with llama.cpp's convert_hf_to_gguf.py.")
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(max(by_id) + 1):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(gguf.TokenType.UNUSED if i not in by_id else gguf.TokenType.NORMAL if i not in added
                     else gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    for kind in ("bos", "eos", "unk", "pad"):
        if (token_id := getattr(tokenizer, f"{kind}_token_id")) is not None:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _add_architecture(writer, config, kind: str, name: str) -> None:
    import gguf

    rope = getattr(config, "rope_parameters", None) or {"rope_type": "default", "rope_theta": getattr(config, "rope_theta", 10000.0)}
    if rope.get("rope_type", "default") != "default":
        raise CourseError(f"The model uses RoPE scaling {rope['rope_type']!r}, which write_gguf does not write.",
                          "convert it with llama.cpp's convert_hf_to_gguf.py, which writes the rope.scaling keys.")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(rope["rope_theta"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, GGUF_TYPES[kind]))


def _check_exportable(model, kind: str, path: Path, overwrite: bool) -> None:
    from peft import PeftModel

    if kind not in GGUF_TYPES:
        raise CourseError(f"Unknown GGUF tensor type {kind!r}.", f"use one of: {', '.join(GGUF_TYPES)}.")
    if isinstance(model, PeftModel):
        raise CourseError("write_gguf writes a plain model; this one still has an adapter.",
                          "merge it first: ftcourse.deploy.merge_adapter(model) (or export_merged).")
    if model.config.model_type != "llama" or getattr(model.config, "attention_bias", False) or getattr(model.config, "mlp_bias", False):
        raise CourseError(f"write_gguf writes Llama-architecture models without biases; this one is {model.config.model_type!r}.",
                          "convert other architectures with llama.cpp's convert_hf_to_gguf.py.")
    if path.exists() and not overwrite:
        raise CourseError(f"{path} already exists; not overwriting it.", "choose another file name, or pass overwrite=True.")


def write_gguf(model, tokenizer, path: str | Path, kind: str = "F16", pre: str = "default", overwrite: bool = False) -> Path:
    """Write a plain (merged) Llama-architecture model and its tokenizer to one GGUF file, atomically.

    ``kind``: ``"F32"``, ``"F16"`` or ``"Q8_0"`` for the 2-D weights (norms stay F32; a row that does not fill Q8_0's
    blocks of 32 is written F16). ``pre`` is llama.cpp's name for the tokenizer's pre-tokenizer (``tokenizer.ggml.pre``:
    ``"smollm"`` for SmolLM2, ``"llama-bpe"`` for Llama 3; ``"default"`` is llama.cpp's GPT-2 split). An existing file is
    kept unless ``overwrite``.
    """
    import gguf

    path = Path(path)
    _check_exportable(model, kind, path, overwrite)
    config = model.config
    with atomic_file(path) as tmp:
        writer = gguf.GGUFWriter(tmp, "llama")
        _add_architecture(writer, config, kind, Path(config.name_or_path or "model").name)
        _add_tokenizer(writer, tokenizer, pre)
        heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
        for name, tensor in model.state_dict().items():
            if name == "lm_head.weight" and config.tie_word_embeddings:
                continue  # tied: llama.cpp reuses token_embd (no output.weight)
            weight = tensor.detach().float().cpu().numpy()
            if (proj := name.split(".")[-2]) in heads:
                weight = permute_qk(weight, heads[proj])
            data, raw_dtype = _tensor_data(weight, kind)
            writer.add_tensor(gguf_tensor_name(name, config.num_hidden_layers), data, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def _gguf_source(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"{path} does not exist.", "write it first with ftcourse.gguf_export.write_gguf(model, tokenizer, path).")
    return path


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32):
    """The model in a GGUF file, through transformers' ``gguf_file=`` (every tensor dequantized to ``dtype``)."""
    from transformers import AutoModelForCausalLM

    path = _gguf_source(path)
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype).eval()


def load_gguf_tokenizer(path: str | Path):
    """The tokenizer transformers rebuilds from a GGUF file's metadata (tokens, merges, special ids, chat template)."""
    from transformers import AutoTokenizer

    path = _gguf_source(path)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def ollama_modelfile(gguf_file: str, tokenizer, system: str | None = None, temperature: float = 0.0) -> str:
    """An Ollama ``Modelfile`` for a GGUF file of a ChatML model (``<|im_start|>``/``<|im_end|>`` turns, as SmolLM2 and Qwen).

    Ollama's ``TEMPLATE`` is a Go template, not the Jinja template the GGUF carries, so it is written out here; other chat
    formats are a :class:`CourseError`.
    """
    if "<|im_start|>" not in (tokenizer.chat_template or ""):
        raise CourseError("ollama_modelfile writes the ChatML template only, and this tokenizer's chat template is another one.",
                          "write the TEMPLATE by hand, following https://github.com/ollama/ollama/blob/main/docs/template.md.")
    template = ("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ range .Messages }}"
                '{{ if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n<|im_start|>assistant\n'
                '{{ else if eq .Role "assistant" }}{{ .Content }}<|im_end|>\n{{ end }}{{ end }}')
    lines = [f"FROM ./{gguf_file}", f'TEMPLATE """{template}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += ['PARAMETER stop "<|im_end|>"', f"PARAMETER temperature {temperature:g}"]
    return "\n".join(lines) + "\n"
