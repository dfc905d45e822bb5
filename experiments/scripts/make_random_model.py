#!/usr/bin/env python3
"""Random-weight models in Hugging Face layout, of given shapes, for tests and benchmarks.

Writes OUT_DIR/config.json, the weights (model.safetensors, or shards
model-0000k-of-0000n.safetensors with model.safetensors.index.json when they exceed
--shard-size) and the tokenizer files of an embedded model (default models/llama-9m; the
vocabulary of the model may be larger than the tokenizer's, whose ids then use only the first
rows).  Nothing is downloaded and only numpy is needed: safetensors is written by hand
(8-byte little-endian header length, JSON header padded with spaces to a multiple of 8, raw
little-endian data).

Weights are drawn as a real initialisation draws them: every linear and embedding
N(0, std^2) with std 0.02 (--std), norm weights 1, biases 0.  The values are deterministic from
--seed: tensor i (in file order) draws from numpy's PCG64 seeded with (seed, i), in chunks of a
fixed size, so the bytes depend on seed, shapes and dtype only.  Generation is streaming: the
header is computed from the shapes first, then each tensor is drawn, converted and written a
chunk at a time, so a 7B model needs a few MB of memory, not 28 GB.

Families: "llama" (LlamaForCausalLM names; GQA with --kv-heads; untied head unless --tie) and
"opt" (OPTForCausalLM names, pre-LN, ReLU, biases, learned positions with offset 2, tied head).

usage: make_random_model.py [--preset NAME] [--family llama|opt] [--hidden N] [--layers N]
           [--ffn N] [--heads N] [--kv-heads N] [--vocab N] [--max-pos N] [--dtype f32|f16|bf16]
           [--seed S] [--std X] [--tie] [--shard-size SIZE] [--tokenizer-from DIR]
           [--dry-run] OUT_DIR
Presets (flags given after them override their values):
  tiny            llama, hidden 64, 2 layers, ffn 128, 4 heads (2 KV), vocab 8192, f32 (tests)
  tiny-opt        opt, hidden 64, 2 layers, ffn 256, 4 heads, vocab 8192, f32 (tests)
  llama-170m      llama, hidden 1024, 12 layers, ffn 2816, 16 heads, vocab 8192, f32 (171 M)
  tinyllama-1.1b  llama, hidden 2048, 22 layers, ffn 5632, 32 heads (4 KV), vocab 32000, bf16
  llama-7b        llama, hidden 4096, 32 layers, ffn 11008, 32 heads, vocab 32000, f16
--dry-run prints the tensors, parameter count and bytes without writing anything.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

PRESETS = {
    "tiny": dict(family="llama", hidden=64, layers=2, ffn=128, heads=4, kv_heads=2, vocab=8192,
                 max_pos=256, dtype="f32"),
    "tiny-opt": dict(family="opt", hidden=64, layers=2, ffn=256, heads=4, kv_heads=4, vocab=8192,
                     max_pos=256, dtype="f32"),
    "llama-170m": dict(family="llama", hidden=1024, layers=12, ffn=2816, heads=16, kv_heads=16,
                       vocab=8192, max_pos=2048, dtype="f32"),
    "tinyllama-1.1b": dict(family="llama", hidden=2048, layers=22, ffn=5632, heads=32, kv_heads=4,
                           vocab=32000, max_pos=2048, dtype="bf16"),
    "llama-7b": dict(family="llama", hidden=4096, layers=32, ffn=11008, heads=32, kv_heads=32,
                     vocab=32000, max_pos=4096, dtype="f16"),
}

DTYPES = {  # name: (safetensors dtype, bytes per value, config.json torch dtype)
    "f32": ("F32", 4, "float32"),
    "f16": ("F16", 2, "float16"),
    "bf16": ("BF16", 2, "bfloat16"),
}

CHUNK = 1 << 20          # values drawn per call: fixed, so the bytes never depend on memory
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def parse_size(s):
    """'5GB', '500MB', '1e9' -> bytes."""
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    t = s.strip().upper()
    for u, k in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if t.endswith(u):
            return int(float(t[: -len(u)]) * k)
    return int(float(t))


def tensors_llama(a):
    """(name, shape, init) in file order; init is 'normal', 'ones' or 'zeros'."""
    h, hd = a.hidden, a.hidden // a.heads
    q, kv = a.heads * hd, a.kv_heads * hd
    out = [("model.embed_tokens.weight", (a.vocab, h), "normal")]
    for i in range(a.layers):
        p = "model.layers.%d." % i
        out += [(p + "input_layernorm.weight", (h,), "ones"),
                (p + "self_attn.q_proj.weight", (q, h), "normal"),
                (p + "self_attn.k_proj.weight", (kv, h), "normal"),
                (p + "self_attn.v_proj.weight", (kv, h), "normal"),
                (p + "self_attn.o_proj.weight", (h, q), "normal"),
                (p + "post_attention_layernorm.weight", (h,), "ones"),
                (p + "mlp.gate_proj.weight", (a.ffn, h), "normal"),
                (p + "mlp.up_proj.weight", (a.ffn, h), "normal"),
                (p + "mlp.down_proj.weight", (h, a.ffn), "normal")]
    out.append(("model.norm.weight", (h,), "ones"))
    if not a.tie:
        out.append(("lm_head.weight", (a.vocab, h), "normal"))
    return out


def tensors_opt(a):
    h = a.hidden
    d = "model.decoder."
    out = [(d + "embed_tokens.weight", (a.vocab, h), "normal"),
           (d + "embed_positions.weight", (a.max_pos + 2, h), "normal")]
    for i in range(a.layers):
        p = d + "layers.%d." % i
        out += [(p + "self_attn_layer_norm.weight", (h,), "ones"),
                (p + "self_attn_layer_norm.bias", (h,), "zeros")]
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out += [(p + "self_attn.%s.weight" % n, (h, h), "normal"),
                    (p + "self_attn.%s.bias" % n, (h,), "zeros")]
        out += [(p + "final_layer_norm.weight", (h,), "ones"),
                (p + "final_layer_norm.bias", (h,), "zeros"),
                (p + "fc1.weight", (a.ffn, h), "normal"), (p + "fc1.bias", (a.ffn,), "zeros"),
                (p + "fc2.weight", (h, a.ffn), "normal"), (p + "fc2.bias", (h,), "zeros")]
    out += [(d + "final_layer_norm.weight", (h,), "ones"),
            (d + "final_layer_norm.bias", (h,), "zeros")]
    return out


def config_llama(a, torch_dtype):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
        "hidden_size": a.hidden, "intermediate_size": a.ffn, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
        "head_dim": a.hidden // a.heads, "max_position_embeddings": a.max_pos,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": bool(a.tie),
        "vocab_size": a.vocab, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
        "initializer_range": a.std, "torch_dtype": torch_dtype,
        "qh_random_model": {"seed": a.seed, "std": a.std, "preset": a.preset},
    }


def config_opt(a, torch_dtype):
    return {
        "architectures": ["OPTForCausalLM"], "model_type": "opt",
        "activation_function": "relu", "do_layer_norm_before": True,
        "_remove_final_layer_norm": False, "enable_bias": True,
        "layer_norm_elementwise_affine": True, "hidden_size": a.hidden, "ffn_dim": a.ffn,
        "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
        "max_position_embeddings": a.max_pos, "word_embed_proj_dim": a.hidden,
        "tie_word_embeddings": True, "vocab_size": a.vocab, "bos_token_id": 0,
        "eos_token_id": 2, "pad_token_id": 1, "init_std": a.std, "torch_dtype": torch_dtype,
        "qh_random_model": {"seed": a.seed, "std": a.std, "preset": a.preset},
    }


def to_dtype_bytes(x, dtype):
    """float32 array -> little-endian bytes of dtype (bf16: round to nearest even)."""
    if dtype == "f32":
        return x.astype("<f4", copy=False).tobytes()
    if dtype == "f16":
        return x.astype("<f2").tobytes()
    u = x.astype(np.float32, copy=False).view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return r.astype("<u2").tobytes()


def write_tensor(f, index, name, shape, init, a):
    n = int(np.prod(shape))
    if init != "normal":
        const = np.full(min(n, CHUNK), 1.0 if init == "ones" else 0.0, dtype=np.float32)
        left = n
        while left:
            k = min(left, CHUNK)
            f.write(to_dtype_bytes(const[:k], a.dtype))
            left -= k
        return
    rng = np.random.Generator(np.random.PCG64([a.seed, index]))
    left = n
    while left:
        k = min(left, CHUNK)
        x = rng.standard_normal(k, dtype=np.float32)
        x *= np.float32(a.std)
        f.write(to_dtype_bytes(x, a.dtype))
        left -= k


def shard_plan(tensors, esize, shard_bytes):
    """Tensors split into consecutive shards of at most shard_bytes (one tensor at least)."""
    shards, cur, cur_bytes = [], [], 0
    for t in tensors:
        b = int(np.prod(t[1])) * esize
        if cur and cur_bytes + b > shard_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(t)
        cur_bytes += b
    if cur:
        shards.append(cur)
    return shards


def write_safetensors(path, tensors, first_index, a):
    st_dtype, esize, _ = DTYPES[a.dtype]
    header, off = {}, 0
    for name, shape, _ in tensors:
        b = int(np.prod(shape)) * esize
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [off, off + b]}
        off += b
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for i, (name, shape, init) in enumerate(tensors):
            write_tensor(f, first_index + i, name, shape, init, a)
    os.replace(tmp, path)
    return off


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--family", choices=("llama", "opt"))
    for k in ("hidden", "layers", "ffn", "heads", "kv_heads", "vocab", "max_pos"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, dest=k)
    ap.add_argument("--dtype", choices=sorted(DTYPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--tie", action="store_true", help="llama: tie lm_head to embed_tokens")
    ap.add_argument("--shard-size", default="5GB",
                    help="largest shard (default 5GB, as save_pretrained); smaller -> sharded")
    ap.add_argument("--tokenizer-from", default=None,
                    help="folder whose tokenizer files are copied (default models/llama-9m)")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()

    vals = dict(PRESETS[a.preset]) if a.preset else {}
    for k in ("family", "hidden", "layers", "ffn", "heads", "kv_heads", "vocab", "max_pos",
              "dtype"):
        if getattr(a, k) is not None:
            vals[k] = getattr(a, k)
    vals.setdefault("family", "llama")
    vals.setdefault("dtype", "f32")
    vals.setdefault("max_pos", 2048)
    missing = [k for k in ("hidden", "layers", "ffn", "heads", "vocab") if k not in vals]
    if missing:
        ap.error("give --preset or every shape: missing " + ", ".join("--" + m for m in missing))
    vals.setdefault("kv_heads", vals["heads"])
    for k, v in vals.items():
        setattr(a, k, v)
    if a.hidden % a.heads or a.heads % a.kv_heads:
        ap.error("hidden must be a multiple of heads, and heads of kv-heads")
    if a.family == "opt" and a.kv_heads != a.heads:
        ap.error("opt has no grouped-query attention (kv-heads must equal heads)")
    if min(a.hidden, a.layers, a.ffn, a.heads, a.vocab, a.max_pos) <= 0 or a.std <= 0:
        ap.error("shapes and --std must be positive")
    if a.seed < 0:
        ap.error("--seed must be non-negative")
    a.tie = a.tie or a.family == "opt"

    tensors = tensors_llama(a) if a.family == "llama" else tensors_opt(a)
    st_dtype, esize, torch_dtype = DTYPES[a.dtype]
    n_params = sum(int(np.prod(s)) for _, s, _ in tensors)
    total = n_params * esize
    shards = shard_plan(tensors, esize, parse_size(a.shard_size))
    print("%s: %s, %d tensors, %d parameters (%.2f M), %s, %.1f MB in %d file(s)"
          % (a.out_dir, a.family, len(tensors), n_params, n_params / 1e6, st_dtype, total / 1e6,
             len(shards)))
    if a.dry_run:
        for name, shape, init in tensors:
            print("  %-48s %-14s %s" % (name, "x".join(map(str, shape)), init))
        return 0

    tok_dir = a.tokenizer_from or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "llama-9m")
    if not os.path.isfile(os.path.join(tok_dir, "tokenizer.json")):
        print("make_random_model: no tokenizer.json in %s" % tok_dir, file=sys.stderr)
        return 1
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(a.out_dir)) or ".").free
    if free < total + (64 << 20):
        print("make_random_model: %.1f GB needed, %.1f GB free" % (total / 1e9, free / 1e9),
              file=sys.stderr)
        return 1
    os.makedirs(a.out_dir, exist_ok=True)
    for name in os.listdir(a.out_dir):     # weights of an earlier run would shadow or mix in
        if name in ("model.safetensors", "model.safetensors.index.json") or (
                name.startswith("model-") and name.endswith(".safetensors")):
            os.remove(os.path.join(a.out_dir, name))
    cfg = config_llama(a, torch_dtype) if a.family == "llama" else config_opt(a, torch_dtype)
    with open(os.path.join(a.out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    for name in TOKENIZER_FILES:
        src = os.path.join(tok_dir, name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(a.out_dir, name))

    index = 0
    if len(shards) == 1:
        write_safetensors(os.path.join(a.out_dir, "model.safetensors"), tensors, 0, a)
    else:
        weight_map = {}
        for k, shard in enumerate(shards):
            fname = "model-%05d-of-%05d.safetensors" % (k + 1, len(shards))
            write_safetensors(os.path.join(a.out_dir, fname), shard, index, a)
            index += len(shard)
            for name, _, _ in shard:
                weight_map[name] = fname
        with open(os.path.join(a.out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
