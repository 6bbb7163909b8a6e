"""Model-free pixel agents built from worldmodels' environments, replay views, nets and loop."""

from model_free.nddqn import NDDQN

__all__ = ["NDDQN"]
