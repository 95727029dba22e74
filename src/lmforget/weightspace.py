"""Weight-space ways to forget less: an L2 pull to the start weights (L2-SP) and weight interpolation (WiSE-FT).

- L2-SP: training adds lambda x ||theta - theta_0||^2 (summed over the trained weights) to the loss
  (`finetune.l2sp`; `with_l2sp` makes any Trainer class do it).
- WiSE-FT: after training, theta_0 + alpha (theta - theta_0) for alpha in [0, 1] (`interpolate`); post hoc,
  so a grid of alphas costs only scoring. `torch.lerp` gives exactly theta_0 at alpha 0 and exactly the
  fine-tuned weights at alpha 1. `wise_ft_checkpoint` (`lmforget wise-ft`) writes it for any fine-tuned model.
"""

from __future__ import annotations

from pathlib import Path

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


def wise_ft_checkpoint(base: str, finetuned: str, alpha: float, out: str | Path, *, dtype: str = "float32",
                       trust_remote_code: bool = False, model_seed: int = 0) -> dict:
    """Write theta_0 + alpha (theta_ft - theta_0) as a model directory (safetensors, config, tokenizer) that
    every loader reads: WiSE-FT for a model fine-tuned anywhere (study 2 measured it alone and on KL replay).

    `finetuned` is a model directory or hub id, or a PEFT adapter directory (merged into the base first).
    Interpolates on the CPU in `dtype` (fp32 by default, whatever the checkpoints' own dtype); the tokenizer
    is the fine-tuned model's (the base's for an adapter without one). `out` must not exist yet: it appears
    whole or not at all. Returns a summary (also written to `out/lmforget_wise_ft.json`).
    """
    import copy
    import os
    import shutil
    import stat

    from lmforget.atomic import write_json
    from lmforget.models import load_model, load_tokenizer
    from lmforget.models.hub import no_hf_progress_bars

    if not 0 <= alpha <= 1:
        raise LmforgetError(f"WiSE-FT alpha must be in [0, 1] (got {alpha})")
    out = Path(out)
    if out.exists():
        raise LmforgetError(f"{out} exists; choose a new directory for the interpolated model")
    opts = {"device": "cpu", "dtype": dtype, "trust_remote_code": trust_remote_code}
    model, tokenizer = load_model(base, seed=model_seed, **opts)
    theta0 = snapshot(model)
    adapter = Path(finetuned) / "adapter_config.json"
    if adapter.is_file():  # a LoRA (or other PEFT) adapter: its weights are the base plus the merged update
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(copy.deepcopy(model), finetuned).merge_and_unload()
        if (Path(finetuned) / "tokenizer_config.json").is_file():
            tokenizer = load_tokenizer(finetuned, trust_remote_code=trust_remote_code)
    else:
        tuned, tokenizer = load_model(finetuned, **opts)
    theta1 = snapshot(tuned)
    del tuned
    shapes = {k: (tuple(v.shape), tuple(theta1[k].shape)) for k, v in theta0.items() if k in theta1}
    differ = {k: s for k, s in shapes.items() if s[0] != s[1]}
    if differ:
        name, (a, b) = next(iter(differ.items()))
        raise LmforgetError(f"--model {finetuned}: {name} has shape {list(b)}, the base's {list(a)} (tokens added "
                            "in fine-tuning?); WiSE-FT needs the very parameters of --base")
    interpolate(model, theta0, theta1, alpha)
    summary = {"base": base, "model": finetuned, "alpha": alpha, "dtype": dtype, "out": str(out),
               "changed_tensors": sum(not torch.equal(theta0[k], theta1[k]) for k in theta0)}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with no_hf_progress_bars():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "lmforget_wise_ft.json", summary)
        usual = stat.S_IMODE((tmp / "lmforget_wise_ft.json").stat().st_mode)  # 0666 minus the umask
        for f in tmp.iterdir():  # safetensors writes its file 0600
            if f.is_file() and stat.S_IMODE(f.stat().st_mode) != usual:
                os.chmod(f, usual)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
