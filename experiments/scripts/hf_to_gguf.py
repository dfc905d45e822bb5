#!/usr/bin/env python3
"""A Llama checkpoint in Hugging Face layout to GGUF with float32 weights (llama.cpp's F32 path).

usage: hf_to_gguf.py MODEL_DIR OUT.gguf

Reads MODEL_DIR/config.json, the safetensors weights (one file, or shards named by
model.safetensors.index.json; stored as F32, F16 or BF16) and MODEL_DIR/tokenizer.json (a
byte-level BPE, as the embedded models and make_random_model.py's models carry), and writes GGUF
version 3 with every tensor in float32.  Only numpy is needed: both formats are read and written
by hand, a tensor at a time, so memory stays at the largest tensor.

Used by tests/bench_llamacpp.sh to time llama.cpp's `llama-perplexity` on the same weights as
`qh ppl`.  What it writes:
  - the "llama" architecture keys (context length, widths, heads, KV heads, RoPE base and
    dimension, RMS-norm epsilon);
  - the tokenizer as "gpt2" (byte-level BPE) with the GPT-2 pre-tokenizer, the vocabulary padded
    with unused tokens up to the model's vocab_size (llama.cpp wants one token per embedding
    row), the merges, BOS/EOS ids and add_bos_token true (qh ppl also prepends one <s>);
  - the tensors under llama.cpp's names.  q_proj and k_proj are permuted back from Hugging
    Face's rotate-half layout (the two halves of each head's rotary pairs stored apart) to
    adjacent pairs, which llama.cpp's "llama" RoPE rotates.
Anything else (another family, biases, RoPE scaling, another tokenizer type) is refused with a
message naming what was found.
"""
import json
import os
import struct
import sys

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32
# GGUF metadata value types
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
GGML_TYPE_F32 = 0
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5


def fail(msg):
    sys.exit("hf_to_gguf: " + msg)


# ---- safetensors, read by hand -------------------------------------------------------------

def safetensors_files(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return sorted(set(weight_map.values()))
    if os.path.exists(os.path.join(model_dir, "model.safetensors")):
        return ["model.safetensors"]
    fail(f"{model_dir}: no model.safetensors or model.safetensors.index.json")


def read_tensor_table(model_dir):
    """name -> (path, dtype, shape, byte offset, byte length)"""
    table = {}
    for name in safetensors_files(model_dir):
        path = os.path.join(model_dir, name)
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
        for tname, info in header.items():
            if tname == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            table[tname] = (path, info["dtype"], tuple(info["shape"]), 8 + header_len + begin,
                            end - begin)
    return table


def load_f32(entry, name):
    path, dtype, shape, offset, length = entry
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(length,))
    if dtype == "F32":
        values = raw.view("<f4").astype(np.float32)
    elif dtype == "F16":
        values = raw.view("<f2").astype(np.float32)
    elif dtype == "BF16":
        values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        fail(f"{path}: tensor {name} has dtype {dtype}; expected F32, F16 or BF16")
    return values.reshape(shape)


# ---- the model's config and tensors -----------------------------------------------------------

def llama_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "llama":
        fail(f"{model_dir}/config.json: model_type {cfg.get('model_type')!r}; only 'llama' is "
             "converted")
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key):
            fail(f"{model_dir}/config.json: {key} is true; biases are not converted")
    if cfg.get("rope_scaling"):
        fail(f"{model_dir}/config.json: rope_scaling {cfg['rope_scaling']!r} is not converted")
    rope = cfg.get("rope_parameters") or {}  # transformers 5 keeps theta and type here
    if rope.get("rope_type", "default") != "default":
        fail(f"{model_dir}/config.json: rope_parameters.rope_type {rope['rope_type']!r}; only "
             "'default' is converted")
    cfg.setdefault("rope_theta", rope.get("rope_theta", 10000.0))
    if cfg.get("hidden_act", "silu") != "silu":
        fail(f"{model_dir}/config.json: hidden_act {cfg['hidden_act']!r}; expected 'silu'")
    heads = cfg["num_attention_heads"]
    cfg.setdefault("num_key_value_heads", heads)
    cfg.setdefault("head_dim", cfg["hidden_size"] // heads)
    return cfg


def unpermute_rotary(w, heads):
    """Rows of each head from [first halves of the pairs; second halves] to adjacent pairs."""
    rows, cols = w.shape
    head_dim = rows // heads
    return (w.reshape(heads, 2, head_dim // 2, cols).swapaxes(1, 2).reshape(rows, cols))


def tensor_plan(cfg, table):
    """(gguf name, hf name, transform) in the order llama.cpp's loader lists them."""
    plan = [("token_embd.weight", "model.embed_tokens.weight", None)]
    per_layer = [
        ("attn_norm", "input_layernorm", None),
        ("attn_q", "self_attn.q_proj",
         lambda w: unpermute_rotary(w, cfg["num_attention_heads"])),
        ("attn_k", "self_attn.k_proj",
         lambda w: unpermute_rotary(w, cfg["num_key_value_heads"])),
        ("attn_v", "self_attn.v_proj", None),
        ("attn_output", "self_attn.o_proj", None),
        ("ffn_norm", "post_attention_layernorm", None),
        ("ffn_gate", "mlp.gate_proj", None),
        ("ffn_up", "mlp.up_proj", None),
        ("ffn_down", "mlp.down_proj", None),
    ]
    for i in range(cfg["num_hidden_layers"]):
        for gguf, hf, fn in per_layer:
            plan.append((f"blk.{i}.{gguf}.weight", f"model.layers.{i}.{hf}.weight", fn))
    plan.append(("output_norm.weight", "model.norm.weight", None))
    if "lm_head.weight" in table and not cfg.get("tie_word_embeddings", False):
        plan.append(("output.weight", "lm_head.weight", None))
    for _, hf, _ in plan:
        if hf not in table:
            fail(f"tensor {hf} not found in the safetensors files")
    return plan


# ---- the tokenizer ---------------------------------------------------------------------------

def tokenizer_fields(model_dir, vocab_size):
    path = os.path.join(model_dir, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        tok = json.load(f)
    model = tok["model"]
    if model.get("type") != "BPE" or (tok.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        fail(f"{path}: model {model.get('type')!r} with pre-tokenizer "
             f"{(tok.get('pre_tokenizer') or {}).get('type')!r}; only a byte-level BPE is converted")
    by_id = {i: t for t, i in model["vocab"].items()}
    special = {a["id"] for a in tok.get("added_tokens", []) if a.get("special")}
    for a in tok.get("added_tokens", []):
        by_id[a["id"]] = a["content"]
    if max(by_id) >= vocab_size:
        fail(f"{path}: token id {max(by_id)} outside the model's vocab_size {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(TOKEN_CONTROL if i in special else TOKEN_NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


# ---- GGUF, written by hand -------------------------------------------------------------------

def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, value):
    if vtype == T_UINT32:
        return struct.pack("<I", value)
    if vtype == T_FLOAT32:
        return struct.pack("<f", value)
    if vtype == T_BOOL:
        return struct.pack("<B", 1 if value else 0)
    if vtype == T_STRING:
        return gguf_string(value)
    raise ValueError(vtype)


def gguf_kv(key, vtype, value):
    return gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)


def gguf_array(key, etype, values):
    out = [gguf_string(key), struct.pack("<IIQ", T_ARRAY, etype, len(values))]
    if etype == T_STRING:
        out.extend(gguf_string(v) for v in values)
    elif etype == T_INT32:
        out.append(np.asarray(values, dtype="<i4").tobytes())
    else:
        raise ValueError(etype)
    return b"".join(out)


def metadata(cfg, model_dir):
    heads, hidden = cfg["num_attention_heads"], cfg["hidden_size"]
    tokens, types, merges = tokenizer_fields(model_dir, cfg["vocab_size"])
    kv = [
        gguf_kv("general.architecture", T_STRING, "llama"),
        gguf_kv("general.name", T_STRING, os.path.basename(os.path.normpath(model_dir))),
        gguf_kv("general.file_type", T_UINT32, 0),  # all F32
        gguf_kv("llama.context_length", T_UINT32, cfg["max_position_embeddings"]),
        gguf_kv("llama.embedding_length", T_UINT32, hidden),
        gguf_kv("llama.block_count", T_UINT32, cfg["num_hidden_layers"]),
        gguf_kv("llama.feed_forward_length", T_UINT32, cfg["intermediate_size"]),
        gguf_kv("llama.attention.head_count", T_UINT32, heads),
        gguf_kv("llama.attention.head_count_kv", T_UINT32, cfg["num_key_value_heads"]),
        gguf_kv("llama.attention.key_length", T_UINT32, cfg["head_dim"]),
        gguf_kv("llama.attention.value_length", T_UINT32, cfg["head_dim"]),
        gguf_kv("llama.rope.dimension_count", T_UINT32, cfg["head_dim"]),
        gguf_kv("llama.rope.freq_base", T_FLOAT32, float(cfg["rope_theta"])),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32,
                float(cfg.get("rms_norm_eps", 1e-6))),
        gguf_kv("llama.vocab_size", T_UINT32, cfg["vocab_size"]),
        gguf_kv("tokenizer.ggml.model", T_STRING, "gpt2"),
        gguf_kv("tokenizer.ggml.pre", T_STRING, "gpt-2"),
        gguf_array("tokenizer.ggml.tokens", T_STRING, tokens),
        gguf_array("tokenizer.ggml.token_type", T_INT32, types),
        gguf_array("tokenizer.ggml.merges", T_STRING, merges),
        gguf_kv("tokenizer.ggml.add_bos_token", T_BOOL, True),
    ]
    for key, cfg_key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                         ("padding_token_id", "pad_token_id")):
        if cfg.get(cfg_key) is not None:
            kv.append(gguf_kv("tokenizer.ggml." + key, T_UINT32, cfg[cfg_key]))
    return kv


def align(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def convert(model_dir, out_path):
    cfg = llama_config(model_dir)
    table = read_tensor_table(model_dir)
    plan = tensor_plan(cfg, table)
    kv = metadata(cfg, model_dir)

    infos, offset = [], 0
    for gguf, hf, _ in plan:
        shape = table[hf][2]
        nbytes = 4 * int(np.prod(shape))
        dims = list(reversed(shape))  # GGUF lists the fastest-varying dimension first
        infos.append(gguf_string(gguf) + struct.pack("<I", len(dims))
                     + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", GGML_TYPE_F32, offset))
        offset = align(offset + nbytes)

    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(plan), len(kv)))
        for item in kv + infos:
            f.write(item)
        f.write(b"\0" * (align(f.tell()) - f.tell()))
        data_start = f.tell()
        for gguf, hf, fn in plan:
            w = load_f32(table[hf], hf)
            if fn is not None:
                w = fn(w)
            f.write(np.ascontiguousarray(w, dtype="<f4").tobytes())
            f.write(b"\0" * (data_start + align(f.tell() - data_start) - f.tell()))
    os.replace(tmp, out_path)


def main():
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) != 3:
        sys.exit("usage: hf_to_gguf.py MODEL_DIR OUT.gguf")
    convert(sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main()
