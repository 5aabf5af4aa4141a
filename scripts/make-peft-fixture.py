#!/usr/bin/env python3
"""Writes tests/fixtures/peft-tiny: a LoRA adapter laid out exactly as
Hugging Face PEFT saves one (`save_pretrained` with safe serialization) for
the tiny test Llama of tests/it/tiny.rs (hidden 64, 4 heads, 2 KV heads,
intermediate 96, 2 layers), plus expected.json: deltas computed here with
numpy, which the Rust test must reproduce.

PEFT's conventions it follows:
- tensor names `base_model.model.<module path>.lora_A.weight` (rank × in)
  and `….lora_B.weight` (out × rank), safetensors metadata {"format": "pt"};
- adapter_config.json with LoraConfig's fields (to_dict() of PEFT 0.13);
- scale = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora; per-module
  r and alpha from rank_pattern / alpha_pattern (keys match the end of the
  module path).

Needs: pip install numpy safetensors
Run:   python3 scripts/make-peft-fixture.py
"""
import json
import math
import os

import numpy as np
from safetensors.numpy import save_file

HIDDEN, HEADS, KV_HEADS, INTER, LAYERS = 64, 4, 2, 96, 2
HEAD_DIM = HIDDEN // HEADS
SHAPES = {  # module -> (out, in)
    "self_attn.q_proj": (HEADS * HEAD_DIM, HIDDEN),
    "self_attn.v_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "mlp.down_proj": (HIDDEN, INTER),
}
R, ALPHA = 4, 8.0
RANK_PATTERN = {"layers.1.mlp.down_proj": 2}
ALPHA_PATTERN = {"layers.1.mlp.down_proj": 3.0}

config = {
    "alpha_pattern": ALPHA_PATTERN,
    "auto_mapping": None,
    "base_model_name_or_path": "sqlagent/tiny-llama-test",
    "bias": "none",
    "eva_config": None,
    "exclude_modules": None,
    "fan_in_fan_out": False,
    "inference_mode": True,
    "init_lora_weights": True,
    "layer_replication": None,
    "layers_pattern": None,
    "layers_to_transform": None,
    "loftq_config": {},
    "lora_alpha": ALPHA,
    "lora_bias": False,
    "lora_dropout": 0.05,
    "megatron_config": None,
    "megatron_core": "megatron.core",
    "modules_to_save": None,
    "peft_type": "LORA",
    "r": R,
    "rank_pattern": RANK_PATTERN,
    "revision": None,
    "target_modules": ["q_proj", "v_proj", "down_proj"],
    "task_type": "CAUSAL_LM",
    "use_dora": False,
    "use_rslora": True,
}


def pattern_value(patterns, path, default):
    for key, value in patterns.items():
        if path == key or path.endswith("." + key):
            return value
    return default


rng = np.random.default_rng(7)
tensors = {}
expected = {}
for layer in range(LAYERS):
    for module, (out_f, in_f) in SHAPES.items():
        path = f"model.layers.{layer}.{module}"
        r = pattern_value(RANK_PATTERN, path, R)
        alpha = pattern_value(ALPHA_PATTERN, path, ALPHA)
        a = rng.normal(0, 0.2, size=(r, in_f)).astype(np.float32)
        b = rng.normal(0, 0.2, size=(out_f, r)).astype(np.float32)
        tensors[f"base_model.model.{path}.lora_A.weight"] = a
        tensors[f"base_model.model.{path}.lora_B.weight"] = b
        scale = alpha / math.sqrt(r)
        x = np.sin(np.arange(in_f, dtype=np.float64) * 0.37).astype(np.float32)
        delta = scale * (b.astype(np.float64) @ (a.astype(np.float64) @ x))
        expected[path] = {"rank": r, "scale": scale, "x": x.tolist(), "delta": delta.tolist()}

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "peft-tiny")
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "adapter_config.json"), "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
save_file(tensors, os.path.join(out, "adapter_model.safetensors"), metadata={"format": "pt"})
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
print(f"wrote {len(tensors)} tensors to {os.path.normpath(out)}")
