"""One training pipeline for reinforcement learning from pixels.

The core (environments, replay, the Lightning loop, networks) lives here; agents plug in
through :class:`worldmodels.training.Agent` and are chosen by a config's ``class_path``.
"""

__version__ = "0.1.0"


def _import_mujoco_whatever_mujoco_gl_says() -> None:
    """TorchRL imports mujoco when it is imported (for its own MuJoCo envs), and mujoco raises on
    import when MUJOCO_GL names a backend this machine cannot load. Atari runs never render MuJoCo
    and must not fail on it: mujoco is then imported with its GL disabled. DeepMind Control envs still
    read MUJOCO_GL through dm_control and say in one sentence when it cannot render (envs/dmc.py)."""
    import os

    backend = os.environ.get("MUJOCO_GL")
    if not backend:
        return
    try:
        import mujoco  # noqa: F401
    except Exception:
        os.environ["MUJOCO_GL"] = "disable"
        try:
            import mujoco  # noqa: F401,F811
        except Exception:
            pass  # no usable mujoco at all: TorchRL copes with that, and DMC envs say so
        finally:
            os.environ["MUJOCO_GL"] = backend


from worldmodels.render_device import render_on_this_ranks_gpu  # noqa: E402

render_on_this_ranks_gpu()  # before mujoco is imported
_import_mujoco_whatever_mujoco_gl_says()
