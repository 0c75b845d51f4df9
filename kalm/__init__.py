"""kalm: Knowledgeable Agents from Language Model rollouts, made usable.

Ground a causal LM on CLEVR-Robot rollouts, let it imagine rollouts for novel goals, and learn
goal-conditioned policies with offline RL on real + imaginary data.
"""

__version__ = "0.1.0"
