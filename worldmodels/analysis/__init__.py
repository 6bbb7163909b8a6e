"""Reading finished runs: evaluations compared across agents and published figures (``compare``), the
published Atari 100k scores (``published``, ``scores``), interval estimates over runs (``stats``) and
offline learning curves (``offline_plot``). Nothing here imports Lightning or the training loop, and
this package imports none of its modules itself: the training loop uses ``scores`` alone.

    python -m worldmodels.analysis.compare <runs...>
    python -m worldmodels.analysis.offline_plot <runs...>
"""
