"""Sharpness-aware minimisation (SAM, Foret et al., ICLR 2021, arXiv 2010.01412) as an optimiser wrapper.

The paper studies its conv stem with AdamW and with SAM ("after adding conv-stem to the ViTs, the SAM
optimiz[er's edge] ..."). SAM minimises ``max_{||e|| <= rho} L(w + e)`` with one extra gradient per step
(Algorithm 1 of Foret et al.)::

    g     = grad L(w)                                  first pass (the engine's backward)
    e     = rho * g / ||g||_2                          SAM            (||.||: all parameters together)
    e     = rho * w^2 * g / ||w * g||_2                ASAM (adaptive=True, Kwon et al. 2021, T_w = |w|)
    g_sam = grad L(w + e)                              second pass, at the perturbed weights
    w     <- base_step(w, g_sam)                       e.g. AdamW; w is restored first, so weight decay,
                                                       momenta and the update all act on w, not w + e

:class:`SAM` wraps a built optimiser (``param_groups`` and ``state`` are the base's, so LR schedulers and
checkpoints see the base) and does both passes inside ``step(closure)``. The closure recomputes the loss
at the current (perturbed) weights and calls ``backward``; a training loop that calls ``step()`` without
a closure (``shared.engine``) registers it beforehand with :meth:`SAM.set_closure`.

Usage::

    opt = SAM(torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05), rho=0.05)
    loss = loss_fn(model(x), y); loss.backward()                  # g at w
    opt.step(lambda: loss_fn(model(x), y).backward())              # e, g_sam at w + e, restore, AdamW
    opt.zero_grad()

Same as ``davda54/sam`` (the PyTorch port most ViT-SAM work uses): norm over all parameters with a
gradient, ``1e-12`` in the denominator, ASAM's ``w^2`` numerator and ``|w| * g`` norm.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SAM(torch.optim.Optimizer):
    """Two-pass SAM / ASAM around ``base`` (any ``torch.optim.Optimizer``); ``rho`` > 0 is the radius."""

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05, adaptive: bool = False):
        if not rho > 0:
            raise ValueError(f"SAM: rho must be > 0, got {rho}")
        # base.defaults: Optimizer.__init__ then adds no new keys to the base's (shared) group dicts
        super().__init__(base.param_groups, base.defaults)
        self.base, self.rho, self.adaptive = base, float(rho), bool(adaptive)
        self.param_groups = base.param_groups  # one list: a scheduler writing 'lr' here sets the base's lr
        self.state = base.state
        self._saved_w: dict[torch.Tensor, torch.Tensor] = {}
        self._closure: Callable[[], object] | None = None

    def set_closure(self, closure: Callable[[], object] | None) -> None:
        """The closure the next ``step()`` without an argument runs (used once, then cleared)."""
        self._closure = closure

    def _params_with_grad(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """``||g||_2`` over all parameters (ASAM: ``||w * g||_2``)."""
        ps = self._params_with_grad()
        if not ps:
            return torch.zeros(())
        dev = ps[0].device
        return torch.stack([((p.abs() if self.adaptive else 1.0) * p.grad).norm(2).to(dev) for p in ps]).norm(2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """``w <- w + e`` from the current gradients (``g`` at ``w``); ``w`` is kept for :meth:`second_step`."""
        scale = self.rho / (self.grad_norm() + 1e-12)
        for p in self._params_with_grad():
            self._saved_w[p] = p.detach().clone()
            e = (p.pow(2) if self.adaptive else 1.0) * p.grad * scale.to(p.device)
            p.add_(e)
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights saved by :meth:`first_step` (bit-exact copies, not ``w + e - e``)."""
        for p, w in self._saved_w.items():
            p.copy_(w)
        self._saved_w.clear()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w``, then the base step with the gradients now in ``.grad`` (``g_sam``)."""
        self.restore()
        self.base.step()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self, closure: Callable[[], object] | None = None):
        """Both passes. ``closure`` (or the one from :meth:`set_closure`) must recompute the loss at the
        perturbed weights and call ``backward``; its return value is returned."""
        closure = closure if closure is not None else self._closure
        self._closure = None
        if closure is None:
            raise RuntimeError("SAM.step needs a closure that recomputes the loss and calls backward at the "
                               "perturbed weights (pass it, or register it with set_closure before step())")
        self.first_step(zero_grad=True)
        try:
            with torch.enable_grad():
                loss = closure()
        except BaseException:
            self.restore()  # never leave the model at w + e
            raise
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        """The base optimiser's state (SAM itself keeps nothing between steps)."""
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        self.state = self.base.state


class frozen_bn_stats:  # noqa: N801 (used as a context manager)
    """Context: BatchNorm layers of ``model`` keep their running statistics unchanged (momentum 0).

    SAM's second forward sees the same batch at perturbed weights; letting it update the running mean and
    variance would count every batch twice (``davda54/sam``'s ``disable_running_stats`` does the same).
    """

    def __init__(self, model: nn.Module):
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.saved: list[float | None] = []

    def __enter__(self):
        self.saved = [m.momentum for m in self.bns]
        for m in self.bns:
            m.momentum = 0.0
        return self

    def __exit__(self, *exc):
        for m, mom in zip(self.bns, self.saved):
            m.momentum = mom
        return False


__all__ = ["SAM", "frozen_bn_stats"]
