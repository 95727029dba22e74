"""Device and dtype policy: bf16 on a CUDA GPU that computes it natively, fp32 elsewhere; fp32 master
weights for full fine-tuning."""

from __future__ import annotations

from lmforget.errors import LmforgetError

DTYPES = ("float32", "bfloat16", "float16", "auto")


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LmforgetError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    return device


def native_bf16() -> bool:
    """A CUDA GPU that computes bf16 natively (compute capability >= 8.0). torch's default also says
    yes for V100/T4, which only emulate it, and vLLM refuses bf16 there."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_dtype(dtype: str | None, device: str):
    """torch dtype for `device`: "auto" (or none) = bf16 on a CUDA GPU with native bf16, fp32 elsewhere
    (V100/T4 only emulate bf16), whatever the checkpoint holds."""
    import torch

    if dtype in (None, "", "auto"):
        cuda = device.startswith("cuda")  # a device elsewhere (a worker's, seen from here) is taken to be native
        return torch.bfloat16 if cuda and (native_bf16() or not torch.cuda.is_available()) else torch.float32
    if dtype not in DTYPES:
        raise LmforgetError(f"unknown dtype {dtype!r} (choose one of: {', '.join(DTYPES)})")
    return getattr(torch, dtype)


def training_dtype(recipe) -> str:
    """The dtype the base weights are loaded in, for training and for scoring the base alike.

    Full fine-tuning trains fp32 master weights, loaded as fp32: loading bf16 and upcasting would put
    every weight on the bf16 grid first, and an update smaller than half a bf16 step would then vanish
    in the scoring cast. LoRA trains adapters on the recipe's (frozen) base dtype.
    """
    return "float32" if recipe.finetune.method == "full" else recipe.model.dtype
