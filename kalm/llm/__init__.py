"""LLM grounding: the base causal LM, and (in sibling modules) the numeric adapters and heads,
the four KALM objectives, training and generation.

``load_base_lm(name)`` gives a dense ``(model, tokenizer)`` for a packaged GGUF model
(``"smollm2-135m"`` by default), a local model folder, a ``.gguf`` file or a model in the local
Hugging Face cache; ``tiny_lm()`` builds a tiny offline stand-in for tests.
"""

from kalm.llm.base import (
    DEFAULT_LM,
    LM_REGISTRY,
    LMNotFoundError,
    PackagedGGUF,
    ResolvedLM,
    lm_cache_dir,
    lm_cache_root,
    lm_info,
    load_base_lm,
    resolve_lm,
    tiny_lm,
    tiny_tokenizer,
)

__all__ = [
    "DEFAULT_LM",
    "LM_REGISTRY",
    "LMNotFoundError",
    "PackagedGGUF",
    "ResolvedLM",
    "lm_cache_dir",
    "lm_cache_root",
    "lm_info",
    "load_base_lm",
    "resolve_lm",
    "tiny_lm",
    "tiny_tokenizer",
]
