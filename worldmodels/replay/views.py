"""The two ways agents read the same replay: sequences (world models) and stacked n-step
transitions (model-free agents), both assembled at sample time from single stored frames.

Written here rather than with TorchRL's samplers: SliceSampler finds trajectories in a flat
storage, while this replay is time-major with one column per lock-stepped environment and a moving
write head; and no TorchRL sampler rebuilds frame stacks and n-step returns from single frames.
Both views sample a start time and a column uniformly, then gather a window of rows.

A batch's frames (``obs``, ``next_obs``) come on the replay's frame device (``Replay.device``), every
other field on the CPU; Lightning's batch transfer moves those, and leaves frames already on its device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldmodels.replay.storage import Replay


class NotEnoughData(RuntimeError):
    pass


def _uniform_times(replay: Replay, lo: int, hi: int, count: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` (time, column) pairs with time uniform in [lo, hi] and column uniform, drawn from
    ``generator`` (the replay's own when None)."""
    if hi < lo:
        raise NotEnoughData(f"the replay holds {replay.time} steps per environment, too few to sample from; "
                            "raise the warm-up steps.")
    generator = replay.generator if generator is None else generator
    t = torch.randint(lo, hi + 1, (count,), generator=generator)
    env = torch.randint(0, replay.num_envs, (count,), generator=generator)
    return t, env


class StatelessView:
    """A view whose batches depend on the replay alone. A view that keeps state of its own over the
    replay (``PrioritizedTransitionView``'s priorities) overrides these two: the loop that owns the
    replay saves that state beside the replay's, per process."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class SequenceView(StatelessView):
    """B x T windows of consecutive steps of one environment. A window may run across an episode
    boundary; the boundary is always marked by ``first`` on the new episode's first step (and
    ``last`` on the old one's final step), so a recurrent model resets its state there."""

    batch_size: int = 16
    seq_len: int = 64

    def rows_needed(self, frame_stack: int) -> int:
        """Rows one environment column must hold before a window can be drawn."""
        return self.seq_len

    def sample(self, replay: Replay) -> dict[str, torch.Tensor]:
        return self.sample_indexed(replay)[0]

    def sample_indexed(self, replay: Replay, generator: torch.Generator | None = None
                       ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``sample`` drawn from ``generator`` (the replay's when None), with the (time, column)
        of every step of the batch, each (B, T)."""
        replay.flush()
        t0, env = _uniform_times(replay, replay.oldest, replay.time - self.seq_len, self.batch_size, generator)
        t = t0[:, None] + torch.arange(self.seq_len)
        env = env[:, None].expand_as(t)
        batch = dict(replay.steps(t, env).items())
        batch["obs"] = replay.frames(t, env)
        return batch, (t, env)


@dataclass
class TransitionView(StatelessView):
    """Transitions (s_t, a_t, R_t, discount, s_{t+m}) with frame stacks of the replay's size and
    n-step discounted returns:

        m = n, or fewer if the episode ends at step t+m
        R = sum_{j=1..m} gamma^(j-1) r_{t+j}
        discount = gamma^m if s_{t+m} is not terminal else 0   (a truncation still bootstraps)

    Frames of a stack that would come from before the episode's first frame repeat the first frame
    or are zeros (``replay.stack_padding``), the padding of the env's FrameStack, so stacks match
    what the agent saw while acting."""

    batch_size: int = 32
    n_step: int = 1
    gamma: float = 0.99

    def sample(self, replay: Replay) -> dict[str, torch.Tensor]:
        return self.sample_indexed(replay)[0]

    def sample_indexed(self, replay: Replay, generator: torch.Generator | None = None
                       ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """``sample`` drawn from ``generator`` (the replay's when None), with the (time, column)
        of each transition's first state s_t, each (B,)."""
        replay.flush()
        lo, hi = self.start_range(replay)
        t_parts, env_parts, found = [], [], 0
        for _ in range(100):
            t, env = _uniform_times(replay, lo, hi, 2 * self.batch_size, generator)
            ok = ~replay.steps(t, env)["last"]
            t_parts.append(t[ok]), env_parts.append(env[ok])
            found += int(ok.sum())
            if found >= self.batch_size:
                break
        else:
            raise NotEnoughData("almost every stored step ends an episode; the replay has no transitions to sample.")
        t, env = torch.cat(t_parts)[:self.batch_size], torch.cat(env_parts)[:self.batch_size]
        return self.transitions_at(replay, t, env), (t, env)

    def rows_needed(self, frame_stack: int) -> int:
        """Rows one environment column must hold before a transition can be drawn (``start_range``)."""
        return frame_stack + self.n_step

    def start_range(self, replay: Replay) -> tuple[int, int]:
        """Logical times a transition may start at: k-1 stored rows before it and n rows after it.
        (Starts must also not be an episode's final row.)"""
        return replay.oldest + replay.frame_stack - 1, replay.time - 1 - self.n_step

    def transitions_at(self, replay: Replay, t: torch.Tensor, env: torch.Tensor) -> dict[str, torch.Tensor]:
        """The transitions starting at logical times ``t`` of columns ``env`` (B,)."""
        k, n = replay.frame_stack, self.n_step
        window = torch.arange(-(k - 1), n + 1)  # positions k-1 is t, k-1+j is t+j
        rows = t[:, None] + window
        cols = env[:, None].expand_as(rows)
        steps = replay.steps(rows, cols)
        after = slice(k, k + n)  # rows t+1 .. t+n
        last = steps["last"][:, after]
        taken = (torch.cumsum(last.int(), 1) - last.int()) == 0  # rows up to and including the first last
        m = taken.sum(1)
        powers = self.gamma ** torch.arange(n, dtype=torch.float32)
        ret = (steps["reward"][:, after] * taken * powers).sum(1)
        end = k - 1 + m  # window position of s_{t+m}
        terminal = steps["terminal"].gather(1, end[:, None]).squeeze(1)
        discount = torch.where(terminal, 0.0, self.gamma ** m.float())

        # Frame sources for a stack ending at window position p: p-k+1..p, clamped to the episode start.
        positions = torch.arange(len(window)).expand_as(rows)
        start = torch.where(steps["first"], positions, torch.full_like(positions, -1)).cummax(1).values

        def stack_rows(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Window rows of the stack ending at p, and which of them lie inside the episode."""
            src = p[:, None] - torch.arange(k - 1, -1, -1)
            episode_start = start.gather(1, p[:, None])
            return rows.gather(1, torch.maximum(src, episode_start).clamp(min=0)), src >= episode_start

        (obs_rows, obs_inside), (next_rows, next_inside) = stack_rows(torch.full_like(m, k - 1)), stack_rows(end)
        both = torch.cat([obs_rows, next_rows], 1)
        frames = replay.frames(both, env[:, None].expand_as(both))  # (B, 2k, C, H, W) or (B, 2k, D), per key
        inside = torch.cat([obs_inside, next_inside], 1) if replay.stack_padding == "zero" and k > 1 else None

        def stacks(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """s_t's and s_{t+m}'s stacks, (B, k*C, H, W) or (B, k*D): frames concatenated along C or D."""
            if inside is not None:  # the mask is the host's (from the steps), the frames may be on a device
                mask = inside.view(*inside.shape, *[1] * (frames.dim() - 2))
                frames = frames * mask.to(frames.device, frames.dtype, non_blocking=True)
            return frames[:, :k].flatten(1, 2), frames[:, k:].flatten(1, 2)

        if isinstance(frames, dict):
            pairs = {name: stacks(value) for name, value in frames.items()}
            obs, next_obs = ({name: pair[i] for name, pair in pairs.items()} for i in (0, 1))
        else:
            obs, next_obs = stacks(frames)
        batch = {
            "obs": obs,
            "action": steps["action"][:, k],  # row t+1 holds the action taken at t
            "reward": ret,
            "discount": discount,
            "next_obs": next_obs,
            "n": m,
        }
        return batch
