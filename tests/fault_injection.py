"""Runs ``worldmodels.fit`` with one fault injected, for tests/test_faults.py:

    python tests/fault_injection.py <fault> <n> -- <fit arguments>

    kill_at_env_step N      SIGKILL when the N-th env step has been taken (or the first count past it)
    sigint_at_env_step N    SIGINT (Ctrl-C) at the N-th env step
    sigterm_at_env_step N   SIGTERM at the N-th env step
    sigint_in_startup 0     SIGINT (Ctrl-C) during start-up, once the new run directory is made and locked
    kill_in_checkpoint N    SIGKILL halfway through writing the N-th checkpoint file
    kill_in_replay_write N  SIGKILL halfway through writing the N-th replay chunk file
    stop_in_checkpoint N    SIGSTOP (paused, to be continued by SIGCONT) as the N-th checkpoint file starts to be
                            written: its replay file is on disk already, last.ckpt still holds the previous cursor
    kill_at_update N        SIGKILL when the N-th update is done (offline runs: their clock is the update count)
    save_on_resume 0        a resumed run saves <run>/checkpoints/restored.ckpt the moment its state is
                            restored (before its environments restart) and exits 0

The patches live here, not in the package: the code under test is the code users run.
"""

import os
import signal
import sys

import torch

fault, n = sys.argv[1], int(sys.argv[2])
fit_args = sys.argv[sys.argv.index("--") + 1:]

from worldmodels import fit  # noqa: E402
from worldmodels.training.experience import Experience  # noqa: E402

if fault in ("sigint_at_env_step", "sigint_in_startup"):
    # A terminal's Ctrl-C raises KeyboardInterrupt; a process started by a pytest-xdist worker inherits
    # SIGINT ignored, and Python then leaves it ignored: restore the terminal's behaviour.
    signal.signal(signal.SIGINT, signal.default_int_handler)
if fault in ("kill_at_env_step", "sigint_at_env_step", "sigterm_at_env_step"):
    interact = Experience._interact
    sig = {"kill_at_env_step": signal.SIGKILL, "sigint_at_env_step": signal.SIGINT,
           "sigterm_at_env_step": signal.SIGTERM}[fault]

    def interact_then_fault(self, agent):
        taken = interact(self, agent)
        # The first step at or past N: several processes count in jumps (distributed.COUNT_EXCHANGE_EVERY).
        if self.counters.env_steps >= n and not getattr(self, "_faulted", False):
            self._faulted = True
            os.kill(os.getpid(), sig)
        return taken

    Experience._interact = interact_then_fault
elif fault == "sigint_in_startup":
    take_lock = fit.take_lock

    def lock_then_interrupt(run):
        take_lock(run)
        os.kill(os.getpid(), signal.SIGINT)

    fit.take_lock = lock_then_interrupt
elif fault == "kill_at_update":
    from worldmodels.training import PeriodicCheckpoint

    batch_end = PeriodicCheckpoint.on_train_batch_end

    def batch_end_then_kill(self, trainer, *args):
        batch_end(self, trainer, *args)
        if trainer.datamodule.counters.updates == n:
            os.kill(os.getpid(), signal.SIGKILL)

    PeriodicCheckpoint.on_train_batch_end = batch_end_then_kill
elif fault == "save_on_resume":
    begin_episodes = Experience.begin_episodes

    def save_then_exit(self):
        if self.counters.env_steps > 0:  # restored from a checkpoint; nothing has drawn or stepped yet
            self.trainer.save_checkpoint(os.path.join(self.trainer.default_root_dir, "checkpoints", "restored.ckpt"))
            os._exit(0)
        begin_episodes(self)

    Experience.begin_episodes = save_then_exit
else:
    suffix = "last.ckpt.tmp" if fault in ("kill_in_checkpoint", "stop_in_checkpoint") else ".pt.tmp"
    save, calls = torch.save, [0]

    def save_then_die(obj, f, *args, **kwargs):
        if getattr(f, "name", "").endswith(suffix):
            calls[0] += 1
            if calls[0] == n and fault == "stop_in_checkpoint":
                os.kill(os.getpid(), signal.SIGSTOP)
            elif calls[0] == n:
                f.write(b"half a file")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return save(obj, f, *args, **kwargs)

    torch.save = save_then_die

fit.main(fit_args)
