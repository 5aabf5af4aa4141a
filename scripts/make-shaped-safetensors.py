#!/usr/bin/env python3
"""Turn a shaped GGUF (../shared/tools/make-shaped-gguf.py) into a Hugging Face
model directory: config.json, the real Llama 3 tokenizer files, and
model.safetensors in bf16 (or f16/f32) with Hugging Face's tensor names.

Its weights are the GGUF's, dequantized: random values, so what it measures is
loading (memory, time), not answers. Tensors are written one at a time, so the
script holds one dequantized tensor in memory, never the model.

  scripts/make-shaped-safetensors.py GGUF --tokenizer-dir DIR --out DIR [--dtype bf16|f16|f32]

Needs numpy and gguf (PyPI `gguf`), e.g. .venv-llamacpp/bin/python.
"""
import argparse, json, os, re, shutil, struct, sys

import numpy as np
import gguf

NAMES = [
    (r"token_embd\.weight", "model.embed_tokens.weight"),
    (r"output_norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"blk\.(\d+)\.attn_q\.weight", r"model.layers.\1.self_attn.q_proj.weight"),
    (r"blk\.(\d+)\.attn_k\.weight", r"model.layers.\1.self_attn.k_proj.weight"),
    (r"blk\.(\d+)\.attn_v\.weight", r"model.layers.\1.self_attn.v_proj.weight"),
    (r"blk\.(\d+)\.attn_output\.weight", r"model.layers.\1.self_attn.o_proj.weight"),
    (r"blk\.(\d+)\.ffn_gate\.weight", r"model.layers.\1.mlp.gate_proj.weight"),
    (r"blk\.(\d+)\.ffn_up\.weight", r"model.layers.\1.mlp.up_proj.weight"),
    (r"blk\.(\d+)\.ffn_down\.weight", r"model.layers.\1.mlp.down_proj.weight"),
    (r"blk\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
]


def hf_name(name):
    for pattern, target in NAMES:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, target, name)
    return None  # rope_freqs: the config's rope_scaling carries it


def field(reader, key):
    f = reader.fields[key]
    value = f.parts[f.data[0]]
    return value.tobytes().decode() if value.dtype == np.uint8 else value.item()


def encode(values, dtype):
    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "f32":
        return values.tobytes()
    if dtype == "f16":
        return values.astype(np.float16).tobytes()
    # bf16: the upper half of each f32, rounded to nearest even.
    bits = values.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).tobytes()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf")
    ap.add_argument("--tokenizer-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    args = ap.parse_args()
    reader = gguf.GGUFReader(args.gguf)
    hidden = field(reader, "llama.embedding_length")
    heads = field(reader, "llama.attention.head_count")
    vocab = field(reader, "llama.vocab_size")
    tensors = [(hf_name(t.name), t) for t in reader.tensors if hf_name(t.name)]
    tied = not any(name == "lm_head.weight" for name, _ in tensors)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": field(reader, "llama.feed_forward_length"),
        "num_hidden_layers": field(reader, "llama.block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": field(reader, "llama.attention.head_count_kv"),
        "rms_norm_eps": field(reader, "llama.attention.layer_norm_rms_epsilon"),
        "rope_theta": field(reader, "llama.rope.freq_base"),
        "max_position_embeddings": field(reader, "llama.context_length"),
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "bos_token_id": field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": field(reader, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[args.dtype],
    }
    if any(t.name == "rope_freqs.weight" for t in reader.tensors):
        config["rope_scaling"] = {
            "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
        }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(args.tokenizer_dir, name), os.path.join(args.out, name))

    # The header first (every size is known from the shapes), then the data.
    width = {"bf16": 2, "f16": 2, "f32": 4}[args.dtype]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, t in tensors:
        shape = [int(d) for d in reversed(t.shape)]  # GGUF lists dims innermost first
        size = int(np.prod(shape)) * width
        header[name] = {"dtype": args.dtype.upper(), "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path = os.path.join(args.out, "model.safetensors")
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for name, t in tensors:
            values = gguf.quants.dequantize(t.data, t.tensor_type)
            out.write(encode(values.reshape(-1), args.dtype))
    print(f"wrote {args.out}: {len(tensors)} tensors, {offset / 1e9:.2f} GB of {args.dtype} weights", file=sys.stderr)


if __name__ == "__main__":
    main()
