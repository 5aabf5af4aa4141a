#!/usr/bin/env python3
"""llama.cpp's tokens and greedy continuations for a set of prompts (llama-cpp-python).

    llamacpp-reference.py MODEL.gguf PROMPTS.json STEPS > REFERENCE.json

PROMPTS.json is a list of {"name", "text", "add_bos"}. For each prompt the
output records llama.cpp's token ids (special tokens in the text parsed, BOS
added when add_bos), its first STEPS greedy tokens (one token per step, from
an empty cache, argmax of the logits), the top 32 logits of the first step,
its logits at 64 fixed token ids and, at every step, the top 5. One thread: the reference does not depend on the machine's
core count.
"""
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama


# 64 fixed token ids across the vocabulary: their first-step logits spread
# like the whole distribution, not only its top.
PROBES = sorted(np.random.default_rng(1).choice(128000, 64, replace=False).tolist())


def top(logits, k):
    idx = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), float(logits[i])] for i in idx]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def main(model, prompts_file, steps):
    prompts = json.load(open(prompts_file, encoding="utf-8"))
    llm = Llama(model_path=model, n_ctx=2048, n_batch=512, n_threads=1, n_threads_batch=1, verbose=False)
    n_vocab = llm.n_vocab()
    out = []
    for p in prompts:
        ids = llm.tokenize(p["text"].encode("utf-8"), add_bos=p["add_bos"], special=True)
        llm.reset()
        llm.eval(ids)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
        first = top(logits, 32)
        probes = [[int(i), float(logits[i])] for i in PROBES if i < n_vocab]
        tokens, step_tops = [], []
        for _ in range(steps):
            step_tops.append(top(logits, 5))
            nxt = int(np.argmax(logits))
            tokens.append(nxt)
            llm.eval([nxt])
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
        out.append({
            "name": p["name"],
            "text": p["text"],
            "add_bos": p["add_bos"],
            "ids": ids,
            "greedy": tokens,
            "first_step_top32": first,
            "first_step_probes": probes,
            "step_top5": step_tops,
        })
    print(json.dumps({
        "made_by": "scripts/make-llamacpp-reference",
        "llama_cpp_python": llama_cpp.__version__,
        "model": {"file": os.path.basename(model), "bytes": os.path.getsize(model), "sha256": sha256(model)},
        "prompts": out,
    }, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
