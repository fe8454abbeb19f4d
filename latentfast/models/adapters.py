"""The :class:`Generator` interface every latentfast method consumes, and :func:`as_generator` for anything else.

A generator is described by three things:

* ``z_dim`` and ``sample_z(n)``: the prior, standard normal (n, z_dim) float32 unless a subclass says otherwise;
* ``f``: the sub-network whose Jacobian Local Basis studies, a callable (B, z_dim) -> (B, ...) — the mapping
  network of a StyleGAN, or z -> an intermediate layer of any other network;
* ``synthesize(latent)``: latent -> images (B, 3, H, W) clamped to [-1, 1].  What "latent" is depends on the
  generator (W or W+ for StyleGAN2, z for BigGAN and for generic callables); ``num_ws`` is set where W+ applies.

``mlp_spec()`` returns an :class:`~latentfast.ops.mlp_jvp.reference.MLPSpec` when f is an MLP the fused kernels
can run, else ``None``.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

from .._checks import as_tensor, check_floating, check_int, check_ndim, check_nonempty

Tensor = torch.Tensor

__all__ = ["Generator", "CallableGenerator", "as_generator", "check_latent"]


def check_latent(name: str, z, width: int, *, what: str = "z") -> Tensor:
    """Validate a (B, width) floating batch of latents; ValueError/TypeError naming ``name`` otherwise."""
    z = check_floating(name, as_tensor(name, z))
    check_ndim(name, z, 2, f"(B, {width}) for {what}")
    if z.shape[1] != width:
        raise ValueError(f"{name}: expected {what} of shape (B, {width}), got shape {tuple(z.shape)} "
                         f"(latent width {z.shape[1]} != {width})")
    check_nonempty(name, z)
    return z


class Generator:
    """Interface (and small shared implementation) of a generator as latentfast sees it.

    Subclasses set ``z_dim`` (int) and ``num_ws`` (int or None) and implement :meth:`f` and :meth:`synthesize`.
    """

    z_dim: int
    num_ws: Optional[int] = None

    def sample_z(self, n: int, generator: Optional[torch.Generator] = None, *, device=None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        """n standard-normal latents, shape (n, z_dim); ``generator`` makes it reproducible."""
        n = check_int("n", n, low=1)
        device = device if device is not None else self._default_device()
        if generator is not None and generator.device != torch.device(device):
            z = torch.randn(n, self.z_dim, generator=generator, dtype=dtype, device=generator.device)
            return z.to(device)
        return torch.randn(n, self.z_dim, generator=generator, dtype=dtype, device=device)

    def f(self, z: Tensor) -> Tensor:  # pragma: no cover - interface
        """The sub-network used for Local Basis: (B, z_dim) -> (B, ...)."""
        raise NotImplementedError

    def synthesize(self, latent: Tensor) -> Tensor:  # pragma: no cover - interface
        """latent -> images (B, 3, H, W) in [-1, 1]."""
        raise NotImplementedError

    def mlp_spec(self):
        """The MLPSpec of ``f`` if f is an MLP the fused kernels can run, else None."""
        return None

    def _default_device(self):
        if isinstance(self, nn.Module):
            for t in self.parameters():
                return t.device
            for t in self.buffers():
                return t.device
        return torch.device("cpu")


class _StopForward(Exception):
    """Raised by a forward hook to skip the rest of the network once the wanted layer has run."""


def _layer_hook_f(module: nn.Module, layer: str, call: Callable[[Tensor], object]) -> Callable[[Tensor], Tensor]:
    try:
        sub = module.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in module.named_modules() if n][:20]
        raise ValueError(f"f_layer: expected the name of a submodule of {type(module).__name__}, got {layer!r}; "
                         f"submodules include {names}") from None

    def f(z: Tensor) -> Tensor:
        box = {}

        def hook(_mod, _inp, out):
            box["out"] = out
            raise _StopForward

        handle = sub.register_forward_hook(hook)
        try:
            call(z)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "out" not in box:
            raise ValueError(f"f_layer: submodule {layer!r} was not called by the forward pass")
        out = box["out"]
        if not isinstance(out, Tensor):
            raise TypeError(f"f_layer: expected submodule {layer!r} to return a Tensor, got {type(out).__name__}")
        return out

    return f


class CallableGenerator(Generator):
    """A :class:`Generator` made of plain callables (see :func:`as_generator`)."""

    def __init__(self, f: Callable[[Tensor], Tensor], synthesize: Optional[Callable[[Tensor], Tensor]],
                 z_dim: int, *, num_ws: Optional[int] = None, module: Optional[nn.Module] = None,
                 mlp_spec: Optional[Callable] = None):
        self.z_dim = check_int("z_dim", z_dim, low=1)
        self.num_ws = num_ws
        self.module = module
        self._f = f
        self._synthesize = synthesize
        self._mlp_spec = mlp_spec

    def _default_device(self):
        if self.module is not None:
            for t in self.module.parameters():
                return t.device
        return torch.device("cpu")

    def f(self, z: Tensor) -> Tensor:
        return self._f(check_latent("z", z, self.z_dim))

    def synthesize(self, latent: Tensor) -> Tensor:
        if self._synthesize is None:
            raise NotImplementedError("synthesize: this generator was built without a synthesize callable")
        return self._synthesize(latent).clamp(-1, 1)

    def mlp_spec(self):
        return self._mlp_spec() if self._mlp_spec is not None else None


def as_generator(model: Union[nn.Module, Callable, Generator], *, f: Union[None, str, Callable] = None,
                 f_layer: Optional[str] = None, synthesize: Union[None, str, Callable] = None,
                 z_dim: Optional[int] = None, num_ws: Optional[int] = None) -> Generator:
    """Wrap any nn.Module or callable as a :class:`Generator`.

    model:      the network (or a plain callable z -> images).  A :class:`Generator` is returned unchanged when no
                other argument is given.
    f:          the sub-network for Local Basis: a callable, or the name of a submodule of ``model`` called
                directly on z (e.g. ``"mapping"``).  Default: the whole model.
    f_layer:    instead of ``f``: the name of a submodule whose OUTPUT is f(z) when ``model(z)`` runs (captured
                with a forward hook; the rest of the forward pass is skipped).
    synthesize: a callable latent -> images, or a submodule/method name of ``model``.  Default: ``model`` itself.
    z_dim:      latent width; taken from ``model.z_dim`` when absent.  Required otherwise.
    Raises TypeError/ValueError naming the argument when something does not fit.
    """
    if isinstance(model, Generator) and f is None and f_layer is None and synthesize is None:
        return model
    if not callable(model):
        raise TypeError(f"model: expected an nn.Module or a callable, got an object of type {type(model).__name__}")
    if f is not None and f_layer is not None:
        raise ValueError("f, f_layer: expected at most one of them, got both")
    if z_dim is None:
        z_dim = getattr(model, "z_dim", None)
        if z_dim is None:
            raise ValueError(f"z_dim: expected the latent width (model {type(model).__name__} has no z_dim attribute)")
    module = model if isinstance(model, nn.Module) else None

    def resolve(name: str, arg: str):
        obj = getattr(model, name, None)
        if obj is None and module is not None:
            try:
                obj = module.get_submodule(name)
            except AttributeError:
                obj = None
        if obj is None or not callable(obj):
            raise ValueError(f"{arg}: expected a callable or the name of a callable attribute/submodule of "
                             f"{type(model).__name__}, got {name!r}")
        return obj

    def pick(value, arg: str, name_kind: str):
        """None -> the model itself; a name -> that attribute/submodule; a callable -> itself."""
        if value is None:
            return model
        if isinstance(value, str):
            return resolve(value, arg)
        if callable(value):
            return value
        raise TypeError(f"{arg}: expected a callable or {name_kind}, got an object of type {type(value).__name__}")

    spec = None
    if f_layer is not None:
        if module is None:
            raise TypeError(f"f_layer: needs model to be an nn.Module, got {type(model).__name__}")
        f_call = _layer_hook_f(module, f_layer, model)
    else:
        f_call = pick(f, "f", "a submodule name")
        if hasattr(f_call, "mlp_spec") and callable(f_call.mlp_spec):
            spec = f_call.mlp_spec
    synth = pick(synthesize, "synthesize", "a name")
    return CallableGenerator(f_call, synth, z_dim, num_ws=num_ws if num_ws is not None else
                             getattr(model, "num_ws", None), module=module, mlp_spec=spec)
