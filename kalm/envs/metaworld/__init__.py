"""Meta-World: a Sawyer arm, 22 tasks of the paper's split, 4-d continuous actions.

``ENVIRONMENT`` is the interface's implementation (``env.py``); the simulator wrapper (``sim``),
the 91-d state (``state``), success rules (``success``), scripted experts (``expert``), the two
composite scenes (``composite``) and the goal language (``language``) are its parts. Importing
this package does not import MuJoCo or Meta-World.
"""

from kalm.envs.metaworld.env import MetaWorldEnvironment

ENVIRONMENT = MetaWorldEnvironment()

__all__ = ["ENVIRONMENT", "MetaWorldEnvironment"]
