"""Base LM loading and generation speed: first (uncached) load, cached load, greedy tokens/s.

The first load dequantizes the GGUF file into a fresh temporary cache folder (the user's cache
is not touched); the cached load then reads that folder. Generation is greedy, exactly
``--new-tokens`` new tokens per prompt, from chat-formatted prompts.

Usage: python bench/lm_load_bench.py [--lm smollm2-135m] [--new-tokens 32] [--batches 1 8]
       [--threads 2 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from kalm.llm import DEFAULT_LM, lm_cache_dir, lm_info, load_base_lm, resolve_lm  # noqa: E402

QUESTIONS = (
    "What is the capital of France?",
    "Name three colours.",
    "How do I push a ball to the left?",
    "Describe a sphere in one sentence.",
    "What is two plus two?",
    "Give me a word that rhymes with ball.",
    "Which is bigger, a cube or a marble?",
    "Say hello in Spanish.",
)


def _prompts(tok, n: int) -> list[str]:
    texts = []
    for i in range(n):
        chat = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        if tok.chat_template:
            texts.append(tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))
        else:
            texts.append(chat[0]["content"])
    return texts


def _generate(model, tok, batch: int, new_tokens: int) -> tuple[float, str]:
    tok.padding_side = "left"  # decoder-only models pad on the left for generation
    inputs = tok(_prompts(tok, batch), return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
        )
    seconds = time.perf_counter() - start
    first = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return batch * new_tokens / seconds, first


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lm", default=DEFAULT_LM, help="registry name, folder or .gguf file")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({torch.get_num_threads(), 1}, reverse=True),
        help="torch CPU thread counts to time generation with (1 wins on a busy machine)",
    )
    args = p.parse_args()

    resolved = resolve_lm(args.lm)
    print(f"LM: {resolved.name} ({resolved.kind}, {resolved.origin}): {resolved.location}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch threads: {torch.get_num_threads()}, CPUs: {os.cpu_count()}, load average: {load}")
    with tempfile.TemporaryDirectory(prefix="kalm-lm-bench-") as cache:
        if resolved.kind == "gguf":
            start = time.perf_counter()
            load_base_lm(args.lm, cache_dir=cache)
            seconds = time.perf_counter() - start
            print(f"first load (dequantize GGUF + save dense cache): {seconds:.1f} s")
            size = sum(f.stat().st_size for f in lm_cache_dir(resolved, cache).iterdir())
            print(f"dense cache size: {size / 2**20:.0f} MiB")
        start = time.perf_counter()
        model, tok = load_base_lm(args.lm, cache_dir=cache)
        print(f"cached load: {time.perf_counter() - start:.2f} s")
    info = lm_info(model)
    print(
        f"model: {info['model_type']}, {info['parameters'] / 1e6:.1f} M parameters, hidden "
        f"{info['hidden_size']}, {info['layers']} layers, {info['dtype']}, tied embeddings "
        f"{info['tie_word_embeddings']}"
    )
    _generate(model, tok, 1, 4)  # warm-up
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            rate, text = _generate(model, tok, batch, args.new_tokens)
            print(
                f"greedy generation, {threads} thread(s), batch {batch}, {args.new_tokens} new "
                f"tokens: {rate:.1f} tokens/s"
            )
            print(f"  first reply: {text.strip()[:80]!r}")


if __name__ == "__main__":
    main()
