"""What each supported Hugging Face architecture becomes in GGUF: hyper-parameters, expected tensors and
the per-tensor changes llama.cpp's graph for that architecture assumes.

    llama    LlamaForCausalLM (Llama, SmolLM2, Mistral)   q/k rows permuted to llama.cpp's rotary layout
    qwen2    Qwen2ForCausalLM                             q/k/v biases
    gemma3   Gemma3ForCausalLM (gemma3_text)              RMSNorm weights stored as 1 + w; per-layer
                                                          sliding window and local/global rope bases
    olmo     OlmoForCausalLM (OLMo-7B-0424-hf, the paper's)  LayerNorm without weights (no norm tensors);
                                                          q/k permuted as llama; optional q/k/v clipping
    olmo2    Olmo2ForCausalLM                             norms after attention and MLP, RMSNorm over the
                                                          whole q and k projections; rotary halves as HF
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ijt_local.errors import UserError


class HParams:
    """config.json with the derived numbers every architecture needs."""

    def __init__(self, config: dict, where: str):
        self.config = config
        self.where = where
        try:
            self.hidden = int(config["hidden_size"])
            self.layers = int(config["num_hidden_layers"])
            self.heads = int(config["num_attention_heads"])
            self.kv_heads = int(config.get("num_key_value_heads") or self.heads)
            self.ffn = int(config["intermediate_size"])
            self.vocab = int(config["vocab_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: config.json lacks or garbles {exc}") from None
        self.head_dim = int(config.get("head_dim") or self.hidden // self.heads)
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.context = int(config.get("max_position_embeddings") or 4096)
        self.tied = bool(config.get("tie_word_embeddings", False))

    def rope(self, layer_type: str | None = None) -> dict:
        """{"rope_theta", "rope_type", "factor"?}: transformers 5 keeps these in rope_parameters (per layer
        type for gemma3); older configs use rope_theta/rope_scaling (and rope_local_base_freq)."""
        params = self.config.get("rope_parameters")
        if isinstance(params, dict) and layer_type in params and isinstance(params[layer_type], dict):
            params = params[layer_type]
        if isinstance(params, dict) and "rope_theta" in params:
            return params
        theta = self.config.get("rope_theta", 10000.0)
        if layer_type == "sliding_attention":
            theta = self.config.get("rope_local_base_freq", 10000.0)
        scaling = self.config.get("rope_scaling") or {}
        return {
            "rope_theta": theta,
            "rope_type": scaling.get("rope_type", scaling.get("type", "default")),
            **({"factor": scaling["factor"]} if "factor" in scaling else {}),
        }

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """HF tensor name suffix (after model.layers.N.) -> expected shape."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "self_attn.q_proj.weight": (q, self.hidden),
            "self_attn.k_proj.weight": (kv, self.hidden),
            "self_attn.v_proj.weight": (kv, self.hidden),
            "self_attn.o_proj.weight": (self.hidden, q),
            "self_attn.q_proj.bias": (q,),
            "self_attn.k_proj.bias": (kv,),
            "self_attn.v_proj.bias": (kv,),
            "self_attn.q_norm.weight": (self.head_dim,),
            "self_attn.k_norm.weight": (self.head_dim,),
            "mlp.gate_proj.weight": (self.ffn, self.hidden),
            "mlp.up_proj.weight": (self.ffn, self.hidden),
            "mlp.down_proj.weight": (self.hidden, self.ffn),
            "input_layernorm.weight": (self.hidden,),
            "post_attention_layernorm.weight": (self.hidden,),
            "pre_feedforward_layernorm.weight": (self.hidden,),
            "post_feedforward_layernorm.weight": (self.hidden,),
        }


def _write_rope_scaling(writer, rope: dict, where: str) -> None:
    import gguf

    kind = rope.get("rope_type", "default")
    if kind == "default":
        return
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        return
    raise UserError(f"{where}: rope scaling {kind!r} is not supported by this converter (default, linear)")


def _write_common(writer, hp: HParams, rms_norm: bool = True) -> None:
    writer.add_context_length(hp.context)
    writer.add_embedding_length(hp.hidden)
    writer.add_block_count(hp.layers)
    writer.add_feed_forward_length(hp.ffn)
    writer.add_head_count(hp.heads)
    writer.add_head_count_kv(hp.kv_heads)
    if rms_norm:
        writer.add_layer_norm_rms_eps(hp.eps)
    writer.add_vocab_size(hp.vocab)
    writer.add_key_length(hp.head_dim)
    writer.add_value_length(hp.head_dim)


def _write_llama(writer, hp: HParams) -> None:
    _write_common(writer, hp)
    rope = hp.rope()
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_rope_dimension_count(hp.head_dim)
    _write_rope_scaling(writer, rope, hp.where)


def _write_olmo(writer, hp: HParams) -> None:
    _write_common(writer, hp, rms_norm=False)
    writer.add_layer_norm_eps(1e-5)  # OlmoLayerNorm's fixed epsilon (the config has none)
    rope = hp.rope()
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_rope_dimension_count(hp.head_dim)
    _write_rope_scaling(writer, rope, hp.where)
    if hp.config.get("clip_qkv") is not None:
        writer.add_clamp_kqv(float(hp.config["clip_qkv"]))


def _write_olmo2(writer, hp: HParams) -> None:
    if hp.config.get("sliding_window") or hp.config.get("layer_types"):
        raise UserError(f"{hp.where}: olmo2 with sliding-window layers (OLMo 3) is not supported")
    _write_llama(writer, hp)


def _write_qwen2(writer, hp: HParams) -> None:
    if hp.config.get("use_sliding_window"):
        raise UserError(f"{hp.where}: qwen2 with use_sliding_window=true is not supported")
    _write_llama(writer, hp)


def _write_gemma3(writer, hp: HParams) -> None:
    config = hp.config
    if config.get("attn_logit_softcapping"):
        raise UserError(f"{hp.where}: gemma3 with attn_logit_softcapping is not supported by llama.cpp")
    scalar = config.get("query_pre_attn_scalar", hp.head_dim)
    if scalar != hp.head_dim:
        # llama.cpp scales gemma3 attention by 1/sqrt(head_dim) (except the 27B layout it detects by size)
        raise UserError(f"{hp.where}: query_pre_attn_scalar {scalar} != head_dim {hp.head_dim} is not supported")
    if config.get("hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        raise UserError(f"{hp.where}: gemma3 activation {config.get('hidden_activation')} is not supported")
    _write_common(writer, hp)
    layer_types = config.get("layer_types")
    if not layer_types:
        pattern = int(config.get("sliding_window_pattern") or config.get("_sliding_window_pattern") or 6)
        layer_types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(hp.layers)]
    if len(layer_types) != hp.layers:
        raise UserError(f"{hp.where}: layer_types has {len(layer_types)} entries for {hp.layers} layers")
    global_rope = hp.rope("full_attention")
    writer.add_rope_freq_base(float(global_rope["rope_theta"]))
    _write_rope_scaling(writer, global_rope, hp.where)
    window = config.get("sliding_window")
    if window and "sliding_attention" in layer_types:
        writer.add_sliding_window(int(window))
        writer.add_sliding_window_pattern([kind == "sliding_attention" for kind in layer_types])
        writer.add_rope_freq_base_swa(float(hp.rope("sliding_attention")["rope_theta"]))
    if config.get("final_logit_softcapping"):
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))


def permute_rotary(weight, heads: int):
    """HF keeps each head's rotary halves apart ([x0..x63, y0..y63]); llama.cpp's llama graph rotates
    adjacent pairs ([x0, y0, x1, y1, ...]). Reorder the output rows (works for biases and LoRA B too)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _llama_tensor(name: str, data, hp: HParams):
    if name.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
        return permute_rotary(data, hp.heads)
    if name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
        return permute_rotary(data, hp.kv_heads)
    return data


def _gemma3_tensor(name: str, data, hp: HParams):
    # Gemma's RMSNorm multiplies by (1 + w); llama.cpp's gemma3 graph multiplies by the stored weight.
    if name.endswith("norm.weight"):
        return data + 1.0
    return data


def _unchanged(name: str, data, hp: HParams):
    return data


def _no_shape_changes(hp: HParams) -> dict:
    return {}


def _olmo2_shapes(hp: HParams) -> dict:
    # OLMo 2 normalises the whole q and k projections, not each head
    return {
        "self_attn.q_norm.weight": (hp.heads * hp.head_dim,),
        "self_attn.k_norm.weight": (hp.kv_heads * hp.head_dim,),
    }


@dataclass(frozen=True)
class Architecture:
    name: str  # the GGUF general.architecture
    model_arch: str  # gguf.MODEL_ARCH member name
    write_hparams: Callable
    transform: Callable  # (hf_name, float32 ndarray, HParams) -> ndarray, same shape
    block_tensors: tuple[str, ...]  # HF suffixes every block must have
    rope_permuted: bool = False  # LoRA B of q/k needs the same row permutation
    final_norm: bool = True  # model.norm.weight (OLMo's weightless LayerNorm has none)
    block_shapes: Callable = _no_shape_changes  # HParams -> {suffix: shape} where it differs from the usual

    def gguf_arch(self):
        import gguf

        return getattr(gguf.MODEL_ARCH, self.model_arch)


_PROJECTIONS = (
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)
_LLAMA_BLOCK = ("input_layernorm.weight", "post_attention_layernorm.weight") + _PROJECTIONS

ARCHITECTURES = {
    "llama": Architecture("llama", "LLAMA", _write_llama, _llama_tensor, _LLAMA_BLOCK, rope_permuted=True),
    "mistral": Architecture("llama", "LLAMA", _write_llama, _llama_tensor, _LLAMA_BLOCK, rope_permuted=True),
    "qwen2": Architecture(
        "qwen2",
        "QWEN2",
        _write_qwen2,
        _unchanged,
        _LLAMA_BLOCK + ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
    ),
    "gemma3_text": Architecture(
        "gemma3",
        "GEMMA3",
        _write_gemma3,
        _gemma3_tensor,
        _LLAMA_BLOCK
        + (
            "pre_feedforward_layernorm.weight",
            "post_feedforward_layernorm.weight",
            "self_attn.q_norm.weight",
            "self_attn.k_norm.weight",
        ),
    ),
    "olmo": Architecture(
        "olmo", "OLMO", _write_olmo, _llama_tensor, _PROJECTIONS, rope_permuted=True, final_norm=False
    ),
    "olmo2": Architecture(
        "olmo2",
        "OLMO2",
        _write_olmo2,
        _unchanged,
        _PROJECTIONS
        + (
            "post_attention_layernorm.weight",
            "post_feedforward_layernorm.weight",
            "self_attn.q_norm.weight",
            "self_attn.k_norm.weight",
        ),
        block_shapes=_olmo2_shapes,
    ),
}
ARCHITECTURE_CLASSES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Gemma3ForCausalLM": "gemma3_text",
    "OlmoForCausalLM": "olmo",
    "OLMoForCausalLM": "olmo",
    "Olmo2ForCausalLM": "olmo2",
}


def architecture_of(config: dict, where: str) -> Architecture:
    model_type = config.get("model_type")
    classes = config.get("architectures") or []
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    for cls in classes:
        if cls in ARCHITECTURE_CLASSES:
            return ARCHITECTURES[ARCHITECTURE_CLASSES[cls]]
    named = model_type or (classes[0] if classes else "none given")
    hint = " (the multimodal gemma3: save its text model, Gemma3ForCausalLM)" if model_type == "gemma3" else ""
    raise UserError(
        f"{where}: architecture {named!r} is not supported{hint}; "
        "supported: llama, mistral, qwen2, gemma3_text, olmo, olmo2"
    )
