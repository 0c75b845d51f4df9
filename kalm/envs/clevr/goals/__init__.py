"""Goals for CLEVR-Robot: specs and success rules, their language, a text parser, and suites.

- ``spec``: the five goal kinds (relation, move, line, gather, all), success rules, rewards;
- ``language``: goal -> instruction texts (train and rephrase pools, easy and hard phrasings);
- ``parser``: instruction text -> goal (rule-based), and goal equivalence for scoring;
- ``suites``: the train / rephrase / easy / hard suites and JSON Lines goals files.
"""

from kalm.envs.clevr.goals import language, parser, spec, suites
from kalm.envs.clevr.goals.language import *  # noqa: F401,F403
from kalm.envs.clevr.goals.parser import *  # noqa: F401,F403
from kalm.envs.clevr.goals.spec import *  # noqa: F401,F403
from kalm.envs.clevr.goals.suites import *  # noqa: F401,F403

__all__ = [*spec.__all__, *language.__all__, *parser.__all__, *suites.__all__]
