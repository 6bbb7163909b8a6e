"""Random streams that live on the device where they draw, and the random state of every device.

Why a stream of our own: the value-based learner passes s' through the online and the target net with
the same random draws (weight noise, A-LIX shift), as Dopamine feeds both nets one noise key. Replaying
``torch.get_rng_state()`` covers only the CPU generator, so on a GPU the two passes drew differently. A
``DeviceStream`` owns one ``torch.Generator`` on the device it is asked to draw on; its state is what is
replayed and checkpointed, whatever the device.
"""

from __future__ import annotations

import torch


def _canonical(device: torch.device | str) -> torch.device:
    """``cuda`` -> ``cuda:<current>``, so a generator made for one spelling is found by the other."""
    device = torch.device(device)
    if device.type != "cpu" and device.index is None:
        device = torch.device(device.type, torch.get_device_module(device.type).current_device())
    return device


class DeviceStream:
    """A seeded random stream drawn on any one device: ``on(device)`` gives its ``torch.Generator`` there
    (made on first use, from the seed or from a restored state). Checkpointed through ``get_state`` /
    ``set_state`` like a ``torch.Generator`` (the agent's ``_generators``); a state restored before the
    agent reaches its device is applied when the generator is made there. A stream that moves to another
    device starts there from its seed (CPU and CUDA generators keep states of different kinds)."""

    def __init__(self, seed: int):
        self._seed = seed
        self._generator: torch.Generator | None = None
        self._pending: torch.Tensor | None = None

    def on(self, device: torch.device | str) -> torch.Generator:
        device = _canonical(device)
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self._seed)
            if self._pending is not None:
                self._generator.set_state(self._pending)  # a checkpoint's state, made on this kind of device
            self._pending = None
        return self._generator

    def manual_seed(self, seed: int) -> DeviceStream:
        self._seed, self._generator, self._pending = seed, None, None
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> torch.Tensor | None:
        """The generator's state; None before its first draw (it then starts from the seed)."""
        return self._generator.get_state() if self._generator is not None else self._pending

    def set_state(self, state: torch.Tensor | None) -> None:
        if self._generator is None or state is None:
            self._generator, self._pending = None, state
        else:
            self._generator.set_state(state)


def accelerator_random_states() -> dict[str, list[torch.Tensor]]:
    """The default generators' states of every accelerator device torch has started (CUDA), for the
    checkpoint beside the CPU's: draws made on the device (DreamerV3's Gumbel noise, DrQ-v2's shifts)
    come from these."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"cuda": torch.cuda.get_rng_state_all()}
    return {}


def set_accelerator_random_states(states: dict[str, list[torch.Tensor]]) -> None:
    """Restore ``accelerator_random_states``; a checkpoint of another number of devices restores none."""
    saved = states.get("cuda")
    if saved and torch.cuda.is_available() and len(saved) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(saved)
