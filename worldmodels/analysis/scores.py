"""Random and human reference scores of the 26 Atari 100k games, and the human-normalised score.

The Atari 100k papers (DER, SPR, DrQ, DreamerV3) report HNS = (score - random) / (human - random) with
one shared table of per-game random and human scores, which goes back to the DQN / Dueling DQN papers.
The numbers below are that table, checked number by number against public copies that agree on all
26 games: DeepMind's dqn_zoo (``dqn_zoo/atari_data.py``: random and human scores of Atari-57, no-op
starts), the random scores in google-research/reincarnating_rl (``reincarnating_rl/atari_scores.py``),
and the 26-game random/human arrays of an Atari 100k benchmark script.
"""

from __future__ import annotations

from worldmodels.errors import ConfigError

# Game (as the papers print it): (random score, human score).
ATARI_100K_SCORES: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3),
    "BankHeist": (14.2, 753.1),
    "BattleZone": (2360.0, 37187.5),
    "Boxing": (0.1, 12.1),
    "Breakout": (1.7, 30.5),
    "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4),
    "DemonAttack": (152.1, 1971.0),
    "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7),
    "Gopher": (257.6, 2412.5),
    "Hero": (1027.0, 30826.4),
    "Jamesbond": (29.0, 302.8),
    "Kangaroo": (52.0, 3035.0),
    "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3),
    "MsPacman": (307.3, 6951.6),
    "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3),
    "Qbert": (163.9, 13455.0),
    "RoadRunner": (11.5, 7845.0),
    "Seaquest": (68.4, 42054.7),
    "UpNDown": (533.4, 11693.2),
}


def _key(game: str) -> str:
    """One spelling for every way a game is written: ``ms_pacman``, ``MsPacman``, ``mspacman``."""
    return "".join(ch for ch in game.lower() if ch.isalnum())


_BY_KEY = {_key(name): name for name in ATARI_100K_SCORES}


def atari_100k_game(game: str) -> str | None:
    """The table's name of ``game`` (config names are snake case: ``up_n_down`` -> ``UpNDown``), or None."""
    return _BY_KEY.get(_key(game))


def human_normalized(game: str, score):
    """(score - random) / (human - random): 0 plays like a random policy, 1 like the human tester.
    ``score`` may be a number or a numpy array of scores."""
    name = atari_100k_game(game)
    if name is None:
        raise ConfigError(f"'{game}' is not one of the 26 Atari 100k games with reference scores "
                          f"({', '.join(ATARI_100K_SCORES)}); its human-normalised score is undefined.")
    random, human = ATARI_100K_SCORES[name]
    return (score - random) / (human - random)
