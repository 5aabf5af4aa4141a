#!/usr/bin/env python3
"""llama.cpp's side of scripts/bench-vs-llamacpp (llama-cpp-python).

    llamacpp-speed.py tokenize MODEL.gguf TEXT_FILE TOKENS   -> JSON ids
    llamacpp-speed.py measure  MODEL.gguf IDS.json THREADS STEPS -> JSON timings

`measure` does what `sqlagent bench --prompt-ids` does: one warm-up pass,
then a prefill of the ids from an empty cache and STEPS greedy steps of one
token each, every step timed (feed, read the logits, pick the argmax).
"""
import json
import resource
import sys
import time

import numpy as np
from llama_cpp import Llama


def tokenize(model, text_file, tokens):
    llm = Llama(model_path=model, vocab_only=True, verbose=False)
    text = open(text_file, encoding="utf-8").read()
    ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    if len(ids) < 2:
        sys.exit(f"{text_file}: tokenizes to fewer than 2 tokens")
    while len(ids) < tokens:  # repeat the body (not the BOS) up to the length asked
        ids += ids[1:]
    print(json.dumps(ids[:tokens]))


def run(llm, ids, steps):
    n_vocab = llm.n_vocab()
    llm.reset()
    start = time.perf_counter()
    llm.eval(ids)
    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
    nxt = int(np.argmax(logits))
    prefill_ms = (time.perf_counter() - start) * 1000
    step_ms, tokens = [], []
    for _ in range(steps):
        t = time.perf_counter()
        llm.eval([nxt])
        tokens.append(nxt)
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        nxt = int(np.argmax(logits))
        step_ms.append((time.perf_counter() - t) * 1000)
    return prefill_ms, step_ms, tokens


def measure(model, ids_file, threads, steps):
    ids = json.load(open(ids_file))
    llm = Llama(
        model_path=model,
        n_ctx=len(ids) + steps + 16,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    run(llm, ids, steps)  # warm-up
    prefill_ms, step_ms, tokens = run(llm, ids, steps)
    print(json.dumps({
        "prompt_tokens": len(ids),
        "prefill_tokens_per_s": len(ids) / (prefill_ms / 1000),
        "decode_tokens_per_s": len(step_ms) / (sum(step_ms) / 1000),
        "step_ms": step_ms,
        "tokens": tokens,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "tokenize" and len(sys.argv) == 5:
        tokenize(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "measure" and len(sys.argv) == 6:
        measure(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
