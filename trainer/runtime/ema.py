"""Exponential moving average of the weights (the weights that are sampled from), with warm-up."""

from __future__ import annotations

import torch
from torch import nn

from shared.errors import CheckpointError, ConfigError
from trainer.runtime.distributed import unwrap


@torch.no_grad()
def lerp_reference(shadow: dict[str, torch.Tensor], state: dict[str, torch.Tensor], decay: float) -> None:
    """One EMA update tensor by tensor, ``s += (1 - decay) * (v - s)`` (the oracle of :meth:`EMA.update`)."""
    for k, s in shadow.items():
        if s.is_floating_point():
            s.lerp_(state[k].detach().float(), 1.0 - decay)
        else:
            s.copy_(state[k])


def ema_decay_at(step: int, decay: float) -> float:
    """EMA warm-up (as in TF's ExponentialMovingAverage num_updates): ``min(decay, (1 + n) / (10 + n))``.

    Short runs would otherwise sample from weights still close to the initialisation (0.9995^300 = 0.86).
    """
    return min(decay, (1.0 + step) / (10.0 + step))


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    ``shadow = decay * shadow + (1 - decay) * param`` after each optimizer step. Non-float buffers
    (counters) are copied. The shadow lives on the model's device in fp32. One update is one
    ``torch._foreach_lerp_`` over all float tensors (a few fused kernels instead of one launch per tensor);
    :func:`lerp_reference` is the per-tensor formula it is tested against.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"EMA decay must be in [0, 1) (got {decay})")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in unwrap(model).state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        state = unwrap(model).state_dict()
        keys = [k for k, s in self.shadow.items() if s.is_floating_point()]
        sources = [state[k] if state[k].dtype == torch.float32 else state[k].float() for k in keys]
        if keys:
            torch._foreach_lerp_([self.shadow[k] for k in keys], sources, 1.0 - self.decay)
        for k, s in self.shadow.items():
            if not s.is_floating_point():
                s.copy_(state[k])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        extra = set(state) - set(self.shadow)
        if missing or extra:
            raise CheckpointError(f"EMA state does not match the model: missing {sorted(missing)[:5]}, "
                                  f"unexpected {sorted(extra)[:5]}")
        for k, v in state.items():
            self.shadow[k].copy_(v)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (e.g. a separate eval copy)."""
        target = unwrap(model).state_dict()
        for k, v in self.shadow.items():
            target[k].copy_(v.to(target[k].dtype))
