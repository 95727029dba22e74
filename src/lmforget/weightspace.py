"""Weight-space ways to forget less: an L2 pull to the start weights (L2-SP) and weight interpolation (WiSE-FT).

- L2-SP: training adds lambda x ||theta - theta_0||^2 (summed over the trained weights) to the loss
  (`finetune.l2sp`; `with_l2sp` makes any Trainer class do it).
- WiSE-FT: after training, theta_0 + alpha (theta - theta_0) for alpha in [0, 1] (`interpolate`); post hoc,
  so a grid of alphas costs only scoring. `torch.lerp` gives exactly theta_0 at alpha 0 and exactly the
  fine-tuned weights at alpha 1.
"""

from __future__ import annotations

import torch

from lmforget.errors import LmforgetError


def added_loss_scale(trainer, num_items_in_batch) -> float:
    """The factor for a term added to `compute_loss`'s loss so that it counts once per optimizer step.

    Trainer divides a micro-batch's loss by the accumulation steps unless the loss was already normalised
    over the whole step (by `num_items_in_batch`); an added per-step term must then be divided here."""
    scaled = getattr(trainer, "loss_is_scaled_for_ga", None)
    if scaled is None:
        scaled = (trainer.model_accepts_loss_kwargs and num_items_in_batch is not None) \
            or trainer.compute_loss_func is not None
    return 1.0 / trainer.current_gradient_accumulation_steps if scaled else 1.0


class L2SPMixin:
    """Trainer mix-in: loss + l2sp x ||theta - theta_0||^2 over the trainable weights at construction."""

    l2sp: float = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._theta0 = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        loss = out[0] if return_outputs else out
        penalty = sum(((p - self._theta0[n]) ** 2).sum() for n, p in model.named_parameters() if n in self._theta0)
        loss = loss + self.l2sp * added_loss_scale(self, num_items_in_batch) * penalty
        return (loss, *out[1:]) if return_outputs else loss


def with_l2sp(trainer_cls: type, l2sp: float) -> type:
    """`trainer_cls` with the L2-SP penalty at strength `l2sp`."""
    if not l2sp > 0:
        raise LmforgetError(f"finetune.l2sp must be > 0 to add the penalty (got {l2sp})")
    return type(f"L2SP{trainer_cls.__name__}", (L2SPMixin, trainer_cls), {"l2sp": float(l2sp)})


def snapshot(model) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU (theta_0 for `interpolate`)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@torch.no_grad()
def interpolate(model, theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor], alpha: float) -> None:
    """Set the model's weights to theta0 + alpha (theta1 - theta0) in place (in theta1's dtype)."""
    if not 0 <= alpha <= 1:
        raise LmforgetError(f"WiSE-FT alpha must be in [0, 1] (got {alpha})")
    state = model.state_dict()
    if set(state) != set(theta0) or set(state) != set(theta1):
        raise LmforgetError("WiSE-FT: the fine-tuned weights do not have the base model's parameters "
                            "(merge LoRA adapters first)")
    for name, target in state.items():
        end = theta1[name]
        if not end.is_floating_point():
            target.copy_(end)
            continue
        target.copy_(torch.lerp(theta0[name].to(end.dtype), end, alpha))
