"""A simulated GPU for CPU-only test machines.

Tensors "on the accelerator" are :class:`DeviceTensor` wrappers: they hold their data in a CPU
tensor and compute every operation on it. They report their device as ``meta``: a CPU-only build
of PyTorch has no CUDA device guard, which some tensor methods (``contiguous``) use before any op
is dispatched. Moving anything to ``cuda``, ``mps`` or ``meta`` moves it onto the accelerator. Inside
:func:`simulated_accelerator` they follow the rules a real GPU enforces, which is what code written
and tested on the CPU gets wrong:

- an operation mixing accelerator tensors with CPU tensors (other than 0-dim scalars and index
  tensors) fails, like PyTorch's "Expected all tensors to be on the same device";
- a CPU random generator used for an operation on the accelerator fails (a GPU op needs a GPU
  generator);
- ``tensor.numpy()`` and ``np.asarray(tensor)`` fail on accelerator tensors (PyTorch refuses them for
  any non-CPU device), so results must go through ``.cpu()``;
- ``mps=True`` also refuses float64 on the accelerator, as Apple's MPS backend does.

Factories (``torch.zeros(..., device=...)``) and ``.to(device)`` naming the accelerator create
wrappers, so ``model.to("cuda")`` moves a model onto it. What it cannot tell: speed, memory, and the
numerical differences of real GPU kernels.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

ACCELERATOR = torch.device("meta")
_ACCELERATOR_TYPES = {"cuda", "mps", "meta"}
_CPU = torch.device("cpu")
# Ops whose CPU tensor arguments are allowed next to accelerator tensors on a real GPU.
_MIXING_ALLOWED = {"copy_", "index", "index_put_", "index_put", "_index_put_impl_", "_to_copy", "set_", "lift_fresh"}


class DeviceMismatch(RuntimeError):
    """What a real GPU raises when CPU and GPU tensors meet in one operation."""


class DeviceTensor(torch.Tensor):
    """A tensor that says it lives on :data:`ACCELERATOR`; its data is the CPU tensor ``inner``."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> "DeviceTensor":
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls, inner.shape, strides=inner.stride(), storage_offset=inner.storage_offset(), dtype=inner.dtype,
            layout=inner.layout, device=ACCELERATOR, requires_grad=inner.requires_grad)
        wrapper.inner = inner
        return wrapper

    def __repr__(self) -> str:  # the default repr would print through .numpy()
        return f"DeviceTensor({tuple(self.shape)}, {self.dtype}, device={ACCELERATOR})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        # Reached only outside simulated_accelerator(): the simulation is off, so is the model.
        raise RuntimeError(f"{func} on a DeviceTensor outside simulated_accelerator()")


def _as_accelerator(value):
    """``"cuda"``, ``"cuda:0"``, ``"mps"`` (as strings or devices) -> :data:`ACCELERATOR`; anything else as is."""
    if isinstance(value, (str, torch.device)):
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError):
            return value
        if device.type in _ACCELERATOR_TYPES:
            return ACCELERATOR
    return value


class _DeviceNames(TorchFunctionMode):
    """Rewrites accelerator device arguments before PyTorch's bindings look for a CUDA runtime."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        args, kwargs = tree_map(_as_accelerator, (args, dict(kwargs or {})))
        if func in (torch.tensor, torch.as_tensor) and kwargs.get("device") == ACCELERATOR:
            # These build their tensor outside the dispatcher: build it on the CPU, then move it.
            kwargs.pop("device")
            return func(*args, **kwargs).to(ACCELERATOR)
        if func is torch.Tensor.tolist and isinstance(args[0], DeviceTensor):
            return args[0].inner.tolist()  # refused for subclasses; a GPU tensor allows it
        return func(*args, **kwargs)


class _Simulation(TorchDispatchMode):
    def __init__(self, mps: bool) -> None:
        super().__init__()
        self.mps = mps

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = func.overloadpacket.__name__
        flat, _ = tree_flatten((args, kwargs))
        wrapped = [a for a in flat if isinstance(a, DeviceTensor)]
        onto_accelerator = _as_accelerator(kwargs.get("device")) == ACCELERATOR
        if onto_accelerator:
            kwargs["device"] = _CPU
        if not wrapped and not onto_accelerator:
            return func(*args, **kwargs)
        if wrapped and name not in _MIXING_ALLOWED:
            for a in flat:
                if isinstance(a, torch.Tensor) and not isinstance(a, DeviceTensor) and a.dim() > 0:
                    raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two "
                                         f"devices, {ACCELERATOR} and cpu! ({func}, cpu tensor {tuple(a.shape)})")
        generator = kwargs.get("generator")
        if isinstance(generator, torch.Generator) and (wrapped or onto_accelerator):
            raise RuntimeError(f"Expected a '{ACCELERATOR.type}' device type for generator but found "
                               f"'{generator.device.type}' ({func})")
        inner_args, inner_kwargs = tree_map(lambda a: a.inner if isinstance(a, DeviceTensor) else a, (args, kwargs))
        out = func(*inner_args, **inner_kwargs)
        if name == "_to_copy" and kwargs.get("device") is not None and not onto_accelerator:
            return out  # .cpu() / .to("cpu"): leaves the accelerator
        originals = {id(w.inner): w for w in wrapped}
        return tree_map(lambda o: self._wrap(o, originals), out)

    def _wrap(self, value, originals: dict):
        if not isinstance(value, torch.Tensor):
            return value
        if id(value) in originals:  # an in-place op returns its (wrapped) argument
            return originals[id(value)]
        if self.mps and value.dtype == torch.float64:
            raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support "
                            "float64. Please use float32 instead.")
        return DeviceTensor(value)


@contextmanager
def simulated_accelerator(mps: bool = False) -> Iterator[str]:
    """Within this block, ``"cuda"`` behaves like an available GPU (``torch.cuda.is_available()`` is
    True); ``mps=True`` adds MPS's float64 rule. Yields the device name to move models to."""
    with mock.patch.object(torch.cuda, "is_available", return_value=True), _DeviceNames(), _Simulation(mps):
        yield "cuda"
