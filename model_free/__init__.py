"""Model-free pixel agents built from worldmodels' environments, replay views, nets and loop."""

from model_free.alix import ALIX
from model_free.sac import SAC
from model_free.drqv2 import DrQv2
from model_free.rainbow import Rainbow

__all__ = ["Rainbow", "SAC", "DrQv2", "ALIX"]
