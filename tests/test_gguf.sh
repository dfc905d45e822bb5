#!/bin/bash
# tests/test_gguf.sh -- experiments/scripts/hf_to_gguf.py on a tiny random Llama (BF16 on disk):
# a GGUF reader written here (not the converter's code) checks the header, the architecture keys
# against config.json, the vocabulary's length, the tensor table (names, dims, F32, 32-byte
# aligned offsets, the file's length), and the data: token_embd and ffn_down equal the Hugging
# Face tensors, and attn_q / attn_k hold each head's rotary pairs side by side (GGUF row 2i of a
# head = Hugging Face row i, row 2i+1 = row i + head_dim/2).  Another family is refused by name.
# Needs a python3 with numpy (skipped otherwise); run from the repository root.
. "$(dirname "$0")/lib.sh"
new_tmp
trap 'rm -rf "$tmp"' EXIT

need_numpy_python hf_to_gguf.py

"$py" -B experiments/scripts/make_random_model.py --preset tiny --dtype bf16 --seed 5 "$tmp/m" \
    > /dev/null 2>&1 || bad "tiny bf16 model not written"
out=$("$py" -B experiments/scripts/hf_to_gguf.py "$tmp/m" "$tmp/m.gguf" 2>&1)
[ $? -eq 0 ] && [ -f "$tmp/m.gguf" ] && ok "converted" || bad "conversion failed: $out"

checks=$("$py" -B - "$tmp/m" "$tmp/m.gguf" <<'EOF' 2>&1
import json, os, struct, sys
import numpy as np
model, path = sys.argv[1], sys.argv[2]
cfg = json.load(open(os.path.join(model, "config.json")))
raw = open(path, "rb").read()
pos = 0
def take(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, raw, pos); pos += struct.calcsize("<" + fmt)
    return v if len(v) > 1 else v[0]
def string():
    global pos
    n = take("Q"); s = raw[pos:pos + n].decode("utf-8"); pos += n; return s
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def value(t):
    if t == 8: return string()
    if t == 9:
        et, n = take("I"), take("Q")
        return [value(et) for _ in range(n)]
    return take(SCALAR[t])
def check(ok, what):
    print(("ok " if ok else "bad ") + what)
check(raw[:4] == b"GGUF", "magic GGUF"); pos = 4
version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
check(version == 3, f"version 3 (got {version})")
kv = {}
for _ in range(n_kv):
    k = string(); kv[k] = value(take("I"))
want = {"general.architecture": "llama", "llama.block_count": cfg["num_hidden_layers"],
        "llama.embedding_length": cfg["hidden_size"], "llama.feed_forward_length": cfg["intermediate_size"],
        "llama.attention.head_count": cfg["num_attention_heads"],
        "llama.attention.head_count_kv": cfg["num_key_value_heads"],
        "llama.rope.dimension_count": cfg["head_dim"], "tokenizer.ggml.model": "gpt2"}
for k, v in want.items():
    check(kv.get(k) == v, f"{k} = {v!r} (got {kv.get(k)!r})")
check(len(kv.get("tokenizer.ggml.tokens", [])) == cfg["vocab_size"], "one token per embedding row")
check(abs(kv.get("llama.attention.layer_norm_rms_epsilon", 0) - cfg["rms_norm_eps"]) < 1e-12, "rms eps")
tensors = {}
for _ in range(n_tensors):
    name = string(); nd = take("I"); dims = [take("Q") for _ in range(nd)]
    tensors[name] = (dims, take("I"), take("Q"))
L = cfg["num_hidden_layers"]
check(n_tensors == 3 + 9 * L, f"{3 + 9 * L} tensors (got {n_tensors})")
data = (pos + 31) // 32 * 32
end = max(off + 4 * int(np.prod(d)) for d, _, off in tensors.values())
check(all(t == 0 and off % 32 == 0 for _, t, off in tensors.values()), "all F32, offsets aligned")
check(len(raw) == data + (end + 31) // 32 * 32 or len(raw) == data + end, "file length")
def gguf(name):
    dims, _, off = tensors[name]
    return np.frombuffer(raw, "<f4", int(np.prod(dims)), data + off).reshape(list(reversed(dims)))
st = open(os.path.join(model, "model.safetensors"), "rb").read()
hlen = struct.unpack_from("<Q", st, 0)[0]; hdr = json.loads(st[8:8 + hlen])
def hf(name):
    b, e = hdr[name]["data_offsets"]
    u = np.frombuffer(st, "<u2", (e - b) // 2, 8 + hlen + b).astype(np.uint32) << 16
    return u.view(np.float32).reshape(hdr[name]["shape"])
check(np.array_equal(gguf("token_embd.weight"), hf("model.embed_tokens.weight")), "token_embd")
check(np.array_equal(gguf("blk.1.ffn_down.weight"), hf("model.layers.1.mlp.down_proj.weight")),
      "ffn_down unchanged")
hd = cfg["head_dim"]
for kind, heads in (("q", cfg["num_attention_heads"]), ("k", cfg["num_key_value_heads"])):
    g, h = gguf(f"blk.0.attn_{kind}.weight"), hf(f"model.layers.0.self_attn.{kind}_proj.weight")
    same = all(np.array_equal(g[a * hd + 2 * i], h[a * hd + i]) and
               np.array_equal(g[a * hd + 2 * i + 1], h[a * hd + hd // 2 + i])
               for a in range(heads) for i in range(hd // 2))
    check(same, f"attn_{kind}: rotary pairs side by side in each of {heads} heads")
EOF
)
while read -r verdict what; do
    case "$verdict" in ok) ok "$what" ;; bad) bad "$what" ;; *) bad "reader: $verdict $what" ;; esac
done <<< "$checks"

"$py" -B experiments/scripts/make_random_model.py --preset tiny-opt "$tmp/o" > /dev/null 2>&1
out=$("$py" -B experiments/scripts/hf_to_gguf.py "$tmp/o" "$tmp/o.gguf" 2>&1)
[ $? -ne 0 ] && grep -q "model_type 'opt'" <<< "$out" && [ ! -e "$tmp/o.gguf" ] &&
    ok "an OPT model is refused by name, nothing written" || bad "OPT not refused: $out"
echo "$pass passed, $fail failed, $skip skipped"
