"""Model-free pixel agents built from worldmodels' environments, replay views, nets and loop."""

from model_free.alix import ALIX
from model_free.drq import DrQ
from model_free.drqv2 import DrQv2
from model_free.nddqn import NDDQN, ALIXAtari, DrQAtari

__all__ = ["NDDQN", "DrQAtari", "ALIXAtari", "DrQ", "DrQv2", "ALIX"]
