"""Weights are arguments, never constants of a compiled function.

A pure function ``fn(params, *args)`` whose identity describes an architecture (a flax module, or a frozen
dataclass of modules and static settings: hashable and equal by value) is compiled once by ``jit_apply``
and serves every parameter set of that architecture. ``bind`` turns it into the closure form the attack
and sampler APIs take, inside a jitted function where ``params`` is traced.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax


def bind(fn, params):
  """``fn(params, ...)`` with ``params`` bound; with ``params=None``, ``fn`` is already a closure: itself."""
  return fn if params is None else functools.partial(fn, params)


def _apply(fn, *args):
  return fn(*args)


jit_apply = jax.jit(_apply, static_argnums=0)
jit_apply.__doc__ = """``fn(*args)`` compiled once per (fn, argument shapes); ``fn`` must be hashable by value."""


@dataclasses.dataclass(frozen=True)
class Apply:
  """``module.apply(variables, *args)`` as a pure function hashable by value: two loads of one architecture
  (equal flax modules) share compilations, where bound ``module.apply`` methods would not."""
  module: Any

  def __call__(self, variables, *args, **kw):
    return self.module.apply(variables, *args, **kw)
