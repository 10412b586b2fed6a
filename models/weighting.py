"""How the detection and survival losses share one encoder: loss weighting or gradient surgery.

- :class:`UncertaintyWeighting`: Kendall, Gal & Cipolla, CVPR 2018, homoscedastic task
  uncertainty. With learnable ``s_i = log sigma_i^2`` and classification likelihoods
  (both heads are Bernoulli), their eq. (10) gives
  ``L = sum_i exp(-s_i) * L_i + s_i / 2``; at its optimum ``s_i = log(2 L_i)``. The
  ``s_i`` must be given to the optimizer with the network's parameters.
- :class:`FixedWeighting`: ``L = sum_i w_i L_i``.
- :class:`PCGrad`: Yu et al., NeurIPS 2020, "Gradient surgery for multi-task learning".
  On the shared parameters, each task's gradient is projected onto the normal plane of
  every other task's gradient it conflicts with (negative dot product), other tasks taken
  in random order; the projected gradients are summed. Task-specific parameters get
  their own task's gradient. (The study uses Nash-MTL, another gradient method; PCGrad is
  the one implemented here.)

:func:`multitask_backward` is the one call a trainer makes, whatever the weighting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.config import ModelConfig

__all__ = [
    "FixedWeighting",
    "PCGrad",
    "UncertaintyWeighting",
    "make_weighting",
    "multitask_backward",
    "pcgrad_project",
]


def _stack(losses: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    if isinstance(losses, torch.Tensor):
        return losses.float().reshape(-1)
    return torch.stack([loss.float().reshape(()) for loss in losses])


class UncertaintyWeighting(nn.Module):
    """Kendall et al.'s uncertainty weighting with learnable log-variances.

    Parameters
    ----------
    n_tasks : int
        Number of losses.
    init : float
        Initial ``s_i = log sigma_i^2`` (0: every weight starts at 1).
    """

    def __init__(self, n_tasks: int = 2, init: float = 0.0) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.full((n_tasks,), float(init)))

    def forward(self, losses: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``sum_i exp(-s_i) * L_i + s_i / 2`` of task losses (n_tasks,) -> scalar."""
        stacked = _stack(losses)
        return (torch.exp(-self.log_vars) * stacked + 0.5 * self.log_vars).sum()

    @property
    def weights(self) -> torch.Tensor:
        """Current effective weights ``exp(-s_i)``, shape (n_tasks,), detached."""
        return torch.exp(-self.log_vars.detach())


class FixedWeighting(nn.Module):
    """``sum_i w_i L_i`` with constant weights.

    Parameters
    ----------
    weights : sequence of float
        One per task.
    """

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]))

    def forward(self, losses: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Weighted sum of task losses (n_tasks,) -> scalar."""
        stacked = _stack(losses)
        return (self.weights.to(stacked.device) * stacked).sum()


def pcgrad_project(
    grads: Sequence[torch.Tensor], generator: torch.Generator | None = None
) -> torch.Tensor:
    """PCGrad: project away conflicting components, then sum.

    Parameters
    ----------
    grads : sequence of torch.Tensor
        One flat gradient per task, each shape (P,).
    generator : torch.Generator, optional
        Seeds the random order in which the other tasks are projected out (the result
        depends on it only with 3 or more tasks).

    Returns
    -------
    torch.Tensor
        shape (P,): ``sum_i g_i^PC`` where, for each other task j in random order,
        ``g_i^PC -= min(g_i^PC . g_j, 0) / |g_j|^2 * g_j`` (``g_j`` the original gradient).
    """
    n = len(grads)
    g = torch.stack([gr.float() for gr in grads])
    sq_norms = (g * g).sum(dim=1).clamp_min(1e-20)
    out = []
    for i in range(n):
        gi = g[i].clone()
        for j in torch.randperm(n, generator=generator).tolist():
            if j == i:
                continue
            # min(dot, 0): no host sync, no change without conflict
            dot = torch.clamp(torch.dot(gi, g[j]), max=0.0)
            gi = gi - dot / sq_norms[j] * g[j]
        out.append(gi)
    return torch.stack(out).sum(dim=0)


class PCGrad:
    """Gradient surgery on the shared parameters (see :func:`pcgrad_project`).

    Parameters
    ----------
    seed : int
        Seeds the order of projections.
    """

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def backward(
        self,
        losses: Sequence[torch.Tensor],
        shared: Sequence[nn.Parameter],
        task_specific: Sequence[nn.Parameter] = (),
    ) -> torch.Tensor:
        """Set ``.grad`` (accumulating) of ``shared`` and ``task_specific``; return sum of losses.

        Costs one backward pass per task.
        """
        params = list(shared) + list(task_specific)
        per_task = []
        for i, loss in enumerate(losses):
            grads = torch.autograd.grad(
                loss, params, retain_graph=i < len(losses) - 1, allow_unused=True
            )
            zipped = zip(params, grads, strict=True)
            per_task.append([torch.zeros_like(p) if g is None else g for p, g in zipped])
        n_shared = len(shared)
        flat = [torch.cat([g.reshape(-1) for g in t[:n_shared]]) for t in per_task]
        combined = pcgrad_project(flat, self.generator) if flat[0].numel() else flat[0]
        offset = 0
        for p in shared:
            _accumulate(p, combined[offset : offset + p.numel()].view_as(p).to(p.dtype))
            offset += p.numel()
        for idx, p in enumerate(task_specific, start=n_shared):
            _accumulate(p, sum(t[idx] for t in per_task))
        return _stack(losses).sum().detach()


def _accumulate(p: nn.Parameter, grad: torch.Tensor) -> None:
    if p.grad is None:
        p.grad = grad.detach().clone()
    else:
        p.grad.add_(grad.detach())


def make_weighting(config: ModelConfig, seed: int = 0) -> nn.Module | PCGrad:
    """The weighting of ``config.weighting`` for two tasks (detection, survival)."""
    if config.weighting == "uncertainty":
        return UncertaintyWeighting(2)
    if config.weighting == "fixed":
        return FixedWeighting(config.task_weights)
    return PCGrad(seed)


def multitask_backward(
    weighting: nn.Module | PCGrad,
    losses: Sequence[torch.Tensor],
    model: nn.Module,
) -> torch.Tensor:
    """Backpropagate task losses the configured way; returns the scalar loss (for logs).

    Parameters
    ----------
    weighting : nn.Module or PCGrad
        From :func:`make_weighting`.
    losses : sequence of torch.Tensor
        Scalar losses, (detection, survival) for multitask; one loss for a single task
        (then it is simply backpropagated).
    model : nn.Module
        The network; its ``shared_parameters()`` (the encoder) are where PCGrad operates.

    Returns
    -------
    torch.Tensor
        Detached scalar: the weighted total (uncertainty, fixed) or the plain sum (PCGrad).
    """
    if len(losses) == 1:
        losses[0].backward()
        return losses[0].detach()
    if isinstance(weighting, PCGrad):
        shared = list(model.shared_parameters())  # type: ignore[operator]
        ids = {id(p) for p in shared}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return weighting.backward(losses, shared, rest)
    total = weighting(losses)
    total.backward()
    return total.detach()
