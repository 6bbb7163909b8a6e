"""``torch.compile`` on an agent's update: on the parts that it spends its time in, or on the whole.

    names = compile_agent(agent)                 # --compile parts (or true): after agent.build(spec)
    names = compile_agent(agent, what="full")    # --compile full: the whole update, captured

Each agent declares its hot parts with a method ``compiled_modules(self) -> dict[str, target]``, a
target being an ``nn.Module`` (its ``forward`` is compiled) or a bound method of one (an RSSM step, a
critic's features). The compiled version replaces the original as an attribute of that module
instance (``forward``, or the method's name); the parameters stay where they are, so the state_dict
keys, the optimizers' parameter lists and therefore the checkpoints are those of the eager agent
(``torch.compile(module)`` assigned back would prefix every key with ``_orig_mod.``), and a run
compiled or not resumes from the other's checkpoint. Compilation is lazy: each target is traced at
its first call, one graph per set of input shapes, grad mode and train/eval mode it meets (a few per
target: update, acting, health checks).

Each target is compiled through a function of its own, defined in this file, rather than with
``Module.compile``: dynamo does not trace a frame of torch's own files, so ``Module.compile`` on an
``nn.Sequential`` or ``nn.Linear`` silently compiles nothing; and dynamo keeps its graphs per code
object, with a limit of 8 (``recompile_limit``), so targets compiled through one shared wrapper (as
``torch.compile(module)`` wraps torch's modules) would fall back to eager mode after the first few.

What an agent declares follows three rules, which keep graph breaks out of its hot path and its
numbers those of the eager agent:
- pure tensor code only: no random draws (they stay in eager mode, so that a compiled run draws the
  same numbers from the same generators as an eager one, and a resume continues the same streams),
  no ``torch.distributions`` objects (their argument checks read tensor values on the host and break
  the graph), no host syncs;
- the largest such piece on the hot path (an RSSM step is one graph, its recurrence and its latent
  logits, not three small ones), since each compiled call has a fixed cost;
- never a module that its agent's regularizers reach into (A-LIX's mixing layers record gradients
  with hooks and draw random shifts; noisy layers draw their noise in ``forward``).

An agent without the method, or whose configuration leaves nothing pure (DER's noisy layers with
A-LIX's mixing), cannot be compiled: ``compile_agent`` stops with a ``ConfigError``. The CLI's
``--compile parts`` (or ``true``, as runs made before ``full`` wrote it) calls ``compile_agent`` on the
agent after ``build``.

``--compile full`` compiles the update itself, as pure functions the agent declares with
``update_regions(self) -> dict[str, bound method]``: batch and random noise drawn before the update in,
losses and metrics (device tensors) out, no draw, host sync or Python state that changes from update to
update inside. Each is compiled whole, ``torch.compile(fullgraph=True, dynamic=False)`` (a graph break is
an error, not a silent fallback to eager code), with ``mode="reduce-overhead"`` when the agent's weights
are on a GPU: CUDA graphs then replay the forward and the backward graph of each region as one launch
each, where an eager update launches thousands of kernels from the host. The backward passes, the
gradient clipping and the optimizer steps run between the regions, outside the compiled code (on the
graphs' saved tensors; the optimizers' foreach kernels); so do Lightning's hooks and the numerical
guard. The mode is chosen at the first call, once the agent is on its device. DreamerV3 declares two
regions (its world model's loss, then its actor's and critic's losses); DrQ-v2 two (its critic's and
encoder's loss, then its actor's).

What it buys depends on the device: compiling fuses the norms, activations and gates between the
matrix products, and saves kernel launches; the products and convolutions themselves run the same
library kernels. On CPU, where those products are ~80% of a DreamerV3 update, it changes little
(``tools/bench_dreamer.py --compile``); the first update also pays the compilation (tens of seconds
on CPU, less with inductor's on-disk cache from an earlier run). A compiled and an eager update agree
to float32 rounding (``tests/test_compile_precision.py``).
"""

from __future__ import annotations

import inspect
import types
from typing import Any, Callable

import torch
from torch import nn

from worldmodels.errors import ConfigError
from worldmodels.training.agent import Agent

Target = nn.Module | Callable[..., Any]


COMPILE_CHOICES = ("parts", "full")


def compile_choice(value: bool | str | None) -> str | None:
    """The CLI's ``--compile``: false (or None) -> None; true -> "parts", as runs made before "full"
    existed meant it; "parts" or "full" as they are."""
    if value is None or value is False or value == "false":
        return None
    if value is True or value == "true":
        return "parts"
    if value not in COMPILE_CHOICES:
        raise ConfigError(f"compile is '{value}'; choose false, parts (or true) or full.")
    return value


def compile_agent(agent: Agent, what: str = "parts", **options: Any) -> list[str]:
    """Compile, in place, the parts ``agent.compiled_modules()`` names (``what="parts"``) or the update
    regions ``agent.update_regions()`` names (``what="full"``), and return their names in the order
    declared. ``options`` go to ``torch.compile`` (``mode``, ``dynamic``, ``backend``, ...). Calling it
    again compiles nothing twice."""
    if agent.spec is None:
        raise ValueError(f"compile_agent: build {type(agent).__name__} for its environment before compiling it.")
    if what == "full":
        return _compile_update(agent, **options)
    targets: dict[str, Target] | None = agent.compiled_modules()
    if targets is None:
        raise ConfigError(f"compile is not supported for {type(agent).__name__}, which declares no compiled_modules; "
                          "set compile to false.")
    if not targets:
        raise ConfigError(f"compile is not supported for {type(agent).__name__} as configured, which leaves nothing "
                          "to compile (its layers draw noise or mix); set compile to false.")
    for name, target in targets.items():
        if isinstance(target, nn.Module):
            owner, attribute = target, "forward"
        elif inspect.ismethod(target) and isinstance(target.__self__, nn.Module):
            owner, attribute = target.__self__, target.__name__
        elif hasattr(target, "_torchdynamo_orig_callable"):
            continue  # a method compiled by an earlier call
        else:
            raise TypeError(f"{type(agent).__name__}.compiled_modules()['{name}'] is {type(target).__name__}; "
                            "name an nn.Module or a method of one.")
        if hasattr(vars(owner).get(attribute), "_torchdynamo_orig_callable"):
            continue  # compiled by an earlier call
        # An instance attribute that is neither a Module nor a Parameter: invisible to state_dict.
        setattr(owner, attribute, torch.compile(_entry_point(name, getattr(owner, attribute)), **options))
    return list(targets)


def _compile_update(agent: Agent, **options: Any) -> list[str]:
    regions = agent.update_regions()
    if not regions:
        raise ConfigError(f"compile full is not supported for {type(agent).__name__}, which declares no update "
                          "regions; set compile to parts or false.")
    for name, method in regions.items():
        owner, attribute = method.__self__, method.__name__
        if getattr(vars(owner).get(attribute), "compiled_region", None) == name:
            continue  # compiled by an earlier call
        setattr(owner, attribute, _compiled_at_first_call(name, method, owner, options))
    return list(regions)


def _compiled_at_first_call(name: str, fn: Callable[..., Any], owner: nn.Module,
                            options: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` compiled whole at its first call, with CUDA graphs (``reduce-overhead``) when ``owner``'s
    weights are then on a GPU, unless ``options`` names a mode or a backend."""
    entry_point, compiled = _entry_point(name, fn), None

    def call(*args, **kwargs):
        nonlocal compiled
        if compiled is None:
            chosen = dict(fullgraph=True, dynamic=False) | options
            on_gpu = next(owner.parameters()).device.type == "cuda"
            if on_gpu and "mode" not in chosen and "backend" not in chosen:
                chosen["mode"] = "reduce-overhead"
            compiled = torch.compile(entry_point, **chosen)
        return compiled(*args, **kwargs)

    call.compiled_region = name
    call.entry_point = entry_point  # the code object whose graphs dynamo keeps
    return call


def _entry_point(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A function that calls ``fn``, with a code object of its own named ``name``, in this file: where
    dynamo starts tracing (it inlines ``fn``), and whose compiled graphs it keeps apart from every
    other target's."""
    def call(*args, **kwargs):
        return fn(*args, **kwargs)

    code = call.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, call.__globals__, name, call.__defaults__, call.__closure__)
