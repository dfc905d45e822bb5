#!/usr/bin/env python3
"""Tiny random-weight models of the families qh loads, and their reference numbers.

For each family: a small config (hidden 64, 2 layers, vocab 512), the transformers model
instantiated with a fixed torch seed in float32, every parameter redrawn so that activations and
logits are of order one (the default initialiser makes near-uniform predictions whose argmax is
decided by rounding), saved with save_pretrained (safetensors; qwen2 in bfloat16, the others in
float32), then reloaded from disk in float32 and scored on the token ids of tokens.json under the
protocol of models/README.md: windows of `seqlen` tokens, each scored alone, ppl = exp(mean over
windows of the window's mean next-token NLL).  Written per family to OUT/<family>/ : the model
folder and reference.json (ppl, per-window NLL, window 0's argmax, logsumexp and true-token logit
for every position).

The vocabulary is 512 entries so that a family's folder stays well under 1 MB; the ids are the
first tokens of data/gutenberg_heldout_2M.txt under the embedded models' tokenizer, taken modulo
512 (the weights are random, so the text only has to be fixed, not meaningful).

usage: make_tiny_family_models.py TOKENS_JSON OUT_DIR   (needs torch and transformers)
"""
import json
import math
import os
import sys
import traceback

import torch
import transformers as tf

VOCAB = 512
SEQLEN = 64
COMMON = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=2, pad_token_id=1)


def llama_like(**kw):
    c = dict(COMMON, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
             rms_norm_eps=1e-6, tie_word_embeddings=False)
    c.update(kw)
    return c


def rope(rope_type="default", theta=10000.0, **kw):
    d = dict(rope_type=rope_type, rope_theta=theta)
    d.update(kw)
    return d


# name: (config class, model class, config kwargs, stored dtype, rope ref for the effect check)
FAMILIES = {
    # Llama 3.2 style: llama3 rope scaling (original context 64 so that every branch of the
    # frequency rule is taken within a 64-token window), tied embeddings
    "llama3": ("LlamaConfig", "LlamaForCausalLM",
               llama_like(head_dim=16, tie_word_embeddings=True,
                          rope_parameters=rope("llama3", 500000.0, factor=4.0, low_freq_factor=1.0,
                                               high_freq_factor=4.0,
                                               original_max_position_embeddings=64)),
               "float32"),
    "llama_linear": ("LlamaConfig", "LlamaForCausalLM",
                     llama_like(head_dim=16, rope_parameters=rope("linear", 10000.0, factor=2.0)),
                     "float32"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              llama_like(rope_parameters=rope("default", 1000000.0)), "bfloat16"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM",
              llama_like(head_dim=32, rope_parameters=rope("default", 1000000.0)), "float32"),
    # sliding window 16 < the 64-token windows scored
    "mistral": ("MistralConfig", "MistralForCausalLM",
                llama_like(head_dim=16, sliding_window=16, rope_parameters=rope()), "float32"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM",
              llama_like(head_dim=16, num_key_value_heads=1, hidden_activation="gelu_pytorch_tanh",
                         hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True,
                         rope_parameters=rope()), "float32"),
    # soft-capping low enough to bite on order-one scores; layer 0 local (window 16), layer 1 global
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               llama_like(head_dim=16, hidden_activation="gelu_pytorch_tanh",
                          hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True,
                          query_pre_attn_scalar=24, attn_logit_softcapping=2.0,
                          final_logit_softcapping=3.0, sliding_window=16,
                          rope_parameters=rope()), "float32"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM",
             llama_like(original_max_position_embeddings=256, sliding_window=None,
                        rope_parameters=rope()), "float32"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(COMMON, n_embd=64, n_layer=2, n_head=4, n_positions=128, n_inner=256,
                  activation_function="gelu_new"), "float32"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                 dict(COMMON, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=256, hidden_act="gelu", max_position_embeddings=128,
                      use_parallel_residual=True, tie_word_embeddings=False,
                      rope_parameters=rope("default", 10000.0, partial_rotary_factor=0.25)),
                 "float32"),
}


def redraw(model, name, gen):
    """Every parameter from N(0, 1/fan_in) (embeddings 1/hidden), biases N(0, 0.1^2), norm
    weights 1 + N(0, 0.1^2) (Gemma's 1 + w norms: N(0, 0.1^2)), norm biases N(0, 0.1^2)."""
    gemma = name.startswith("gemma")
    hidden = model.config.hidden_size
    with torch.no_grad():
        for pname, p in model.named_parameters():
            is_norm = "norm" in pname or ".ln_" in pname or pname.startswith("ln_") or "ln_f" in pname
            if p.ndim == 1:
                base = 1.0 if (is_norm and pname.endswith("weight") and not gemma) else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                if any(s in pname for s in ("embed", "wte", "wpe")):
                    fan = hidden
                elif name == "gpt2":
                    fan = p.shape[0]          # Conv1D stores (in, out)
                else:
                    fan = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan))


def make_config(cls, kw):
    """The config from kw; older or newer transformers spell a few keys differently, so on a
    refusal retry without the duplicate activation key, then with rope_scaling + rope_theta."""
    tries = [dict(kw)]
    k2 = dict(kw)
    if "hidden_activation" in k2:
        k2.pop("hidden_act", None)
    tries.append(k2)
    k3 = dict(k2)
    rp = k3.pop("rope_parameters", None)
    if rp:
        rp = dict(rp)
        k3["rope_theta"] = rp.pop("rope_theta")
        if "partial_rotary_factor" in rp:
            k3["partial_rotary_factor"] = rp.pop("partial_rotary_factor")
            k3["rotary_pct"] = k3["partial_rotary_factor"]
        if rp.get("rope_type", "default") != "default":
            k3["rope_scaling"] = rp
    tries.append(k3)
    err = None
    for t in tries:
        try:
            return cls(**t)
        except Exception as e:  # noqa: BLE001 -- report and try the next spelling
            print(f"{cls.__name__}: {e!r}; retrying", flush=True)
            err = e
    raise err


def score(model, ids, seqlen):
    n_win = len(ids) // seqlen
    nll, first = [], None
    with torch.no_grad():
        for w in range(n_win):
            x = torch.tensor([ids[w * seqlen:(w + 1) * seqlen]], dtype=torch.long)
            logits = model(input_ids=x).logits[0].double()
            lse = torch.logsumexp(logits, dim=-1)
            tgt = x[0, 1:]
            lp = logits[:-1].gather(1, tgt[:, None])[:, 0] - lse[:-1]
            nll.append(float(-lp.mean()))
            if w == 0:
                true_logit = [float(v) for v in logits[:-1].gather(1, tgt[:, None])[:, 0]]
                first = dict(argmax=[int(v) for v in logits.argmax(-1)],
                             logsumexp=[float(v) for v in lse],
                             true_logit=true_logit,
                             logits_pos0_first16=[float(v) for v in logits[0, :16]])
    return dict(windows=n_win, ppl=math.exp(sum(nll) / n_win), window_nll=nll), first


def one(name, spec, ids, out):
    cfg_cls, model_cls, kw, dtype = spec
    torch.manual_seed(1234)
    cfg = make_config(getattr(tf, cfg_cls), kw)
    cfg._attn_implementation = "eager"
    model = getattr(tf, model_cls)(cfg).float().eval()
    gen = torch.Generator().manual_seed(4321)
    redraw(model, name, gen)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    if dtype == "bfloat16":
        model.to(torch.bfloat16).save_pretrained(d)
    else:
        model.save_pretrained(d)
    m2 = getattr(tf, model_cls).from_pretrained(d, dtype=torch.float32,
                                                attn_implementation="eager").eval()
    ppl, first = score(m2, ids, SEQLEN)
    ref = dict(family=name, transformers=tf.__version__, torch=torch.__version__,
               compute="float32 upcast of the stored weights, eager attention, CPU",
               stored_dtype=dtype, seqlen=SEQLEN, n_tokens=len(ids), ppl={str(SEQLEN): ppl},
               window0=first, config=m2.config.to_dict().get("model_type"))
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(f"{name}: ppl {ppl['ppl']:.6f} over {ppl['windows']} windows", flush=True)
    return m2


def main():
    tokens, out = sys.argv[1], sys.argv[2]
    ids = [int(v) % VOCAB for v in json.load(open(tokens))["ids"]]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(4)
    print("transformers", tf.__version__, "torch", torch.__version__, flush=True)
    failed = []
    for name, spec in FAMILIES.items():
        if len(sys.argv) > 3 and name not in sys.argv[3:]:
            continue
        try:
            one(name, spec, ids, out)
        except Exception:
            traceback.print_exc()
            failed.append(name)
    print("failed:", failed, flush=True)


if __name__ == "__main__":
    main()
