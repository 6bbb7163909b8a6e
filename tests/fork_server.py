"""Starts the suite's training runs by forking a process that has imported the pipeline once, instead of
a new interpreter per run: each ``python -m worldmodels.fit`` spends several seconds of a core importing
torch, Lightning, TorchRL and the agents before its first step, and the suite starts about a hundred.

    server = ForkServer()                 # one per pytest process (conftest.fork_server)
    done = server.run(argv, cwd, env, timeout)   # a subprocess.CompletedProcess, as subprocess.run gives

``argv`` is what follows ``python``: ``-m module args...`` or ``script.py args...``. The server forks; the
child takes ``env`` as its whole environment, changes to ``cwd``, sends its stdout and stderr to files,
and runs the module or script as ``__main__`` (``runpy``), exactly as the interpreter would; its exit
status (a signal's included: a ``kill -9`` reads as returncode -9) comes back as ``subprocess.run``'s.

What a fork cannot give a run is left to a new interpreter (``needs_own_interpreter``): environment
variables read when a module is imported (``PYTHONPATH``, ``OMP_NUM_THREADS``, ``MUJOCO_GL`` and the like,
when they differ from the server's). A run on several processes forks its first process; Lightning's
launcher starts the others with ``sys.executable -m worldmodels.fit`` and the same arguments, as it
would from a new interpreter (``runpy`` gives the fork's ``__main__`` the module's ``__spec__``). The
server imports no renderer (MuJoCo's EGL display is made on first use, in the child) and starts no
thread before it forks. ``TESTS_FRESH_INTERPRETERS=1`` gives every run a new interpreter.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import runpy
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Read when a module is imported, so a run that sets one of these differently needs its own interpreter.
IMPORT_TIME_VARIABLES = ("PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MUJOCO_GL", "MUJOCO_EGL_DEVICE_ID",
                         "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "COUNT_COLLECTIVES_TO", "LOCAL_RANK")


def needs_own_interpreter(argv: list[str], env: dict[str, str], server_env: dict[str, str]) -> bool:
    """Whether a run must start a new interpreter rather than a fork of the server."""
    if os.environ.get("TESTS_FRESH_INTERPRETERS") == "1":  # every run in a new interpreter, as before
        return True
    return any(env.get(k) != server_env.get(k) for k in IMPORT_TIME_VARIABLES)


class ForkServer:
    """The test process's side: starts the server on first use and hands it runs, one at a time."""

    def __init__(self):
        self._server: subprocess.Popen | None = None
        # The server's environment: the test process's, with the repository importable (as the runs' own).
        self.env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    def _started(self) -> subprocess.Popen:
        if self._server is None or self._server.poll() is not None:
            self._server = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            bufsize=0, env=self.env)
        return self._server

    def _reply(self, deadline: float | None = None) -> dict | None:
        """The server's next reply line, or None at ``deadline``. Read a byte at a time from the pipe's
        descriptor, so that nothing waits in a buffer that ``select`` cannot see."""
        fd, line = self._server.stdout.fileno(), b""
        while not line.endswith(b"\n"):
            if deadline is not None and not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return None
            byte = os.read(fd, 1)
            if not byte:
                raise RuntimeError("the fork server ended; see its stderr above")
            line += byte
        return json.loads(line)

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        if needs_own_interpreter(argv, env, self.env):
            return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        server = self._started()
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            server.stdin.write((json.dumps(request) + "\n").encode())
            pid = self._reply()["pid"]
            done = self._reply(deadline=time.monotonic() + timeout)
            if done is None:  # a hung run: killed, as subprocess.run's timeout does
                os.kill(pid, signal.SIGKILL)
                self._reply()
                raise subprocess.TimeoutExpired([sys.executable, *argv], timeout, out.read_text(), err.read_text())
            return subprocess.CompletedProcess([sys.executable, *argv], done["returncode"], out.read_text(),
                                               err.read_text())

    def close(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.stdin.close()
            self._server.wait(timeout=30)


_SERVER_TEMPORARY_DIRECTORIES: list[tempfile.TemporaryDirectory] = []


def _own_temporary_directories() -> None:
    """In a child: point each temporary folder made while the server imported (W&B's media and artifact
    folders) at a new folder of the child's own, removed at its exit. Shared, the first child's exit
    would remove the folder every later child writes its videos to."""
    for directory in _SERVER_TEMPORARY_DIRECTORIES:
        directory._finalizer.detach()  # the server's folder is the server's to remove
        directory.name = tempfile.mkdtemp()
        atexit.register(shutil.rmtree, directory.name, ignore_errors=True)


def _run_child(request: dict) -> None:
    """In the forked child: become the requested run, then exit with its status (never returns)."""
    code = 1
    try:
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        _own_temporary_directories()
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.close(0)
        os.open(os.devnull, os.O_RDONLY)  # fd 0 again: a run reads no stdin
        argv = request["argv"]
        try:
            if argv[0] == "-m":
                sys.argv = [argv[1], *argv[2:]]
                sys.path[0] = request["cwd"]  # as ``python -m`` puts the working directory first
                sys.modules.pop(argv[1], None)  # the server imported it; ``python -m`` runs it as __main__ only
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(argv)
                sys.path[0] = str(Path(argv[0]).resolve().parent)
                runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if done.code is not None and not isinstance(done.code, int):
                print(done.code, file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()  # what the interpreter runs at exit (W&B's finish, the runs' own handlers)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve() -> None:
    """The server: import what every run imports, then fork one child per request line on stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the pytest-xdist workers it serves
    import lightning  # noqa: F401
    # What a run's W&B start-up and first logged step import (about 2.5 s of a core a run): W&B, its
    # launch package, and pandas where installed (MinAtar installs it). W&B's import makes temporary
    # folders, which each child moves to folders of its own (``_own_temporary_directories``).
    try:
        import pandas  # noqa: F401
    except ImportError:  # W&B imports it only where it is installed
        pass
    import wandb  # noqa: F401
    import wandb.sdk.launch  # noqa: F401
    import model_free  # noqa: F401
    import worldmodels.dreamer  # noqa: F401
    import worldmodels.fit  # noqa: F401

    if threading.active_count() != 1:  # a fork copies only the thread that forks
        raise RuntimeError(f"the fork server started threads while importing: {threading.enumerate()}")
    global _SERVER_TEMPORARY_DIRECTORIES
    _SERVER_TEMPORARY_DIRECTORIES = [o for o in gc.get_objects() if isinstance(o, tempfile.TemporaryDirectory)]
    protocol = sys.stdout.buffer
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        protocol.write((json.dumps({"pid": pid}) + "\n").encode())
        protocol.flush()
        _, status = os.waitpid(pid, 0)
        returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        protocol.write((json.dumps({"returncode": returncode}) + "\n").encode())
        protocol.flush()


if __name__ == "__main__":
    serve()
