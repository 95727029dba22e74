"""Gradient similarity: inner products of randomly projected per-example loss gradients.

An example's loss is its mean NLL over the scored tokens of `lmforget.encoding` (the same tokens scoring
and fine-tuning use). Gradients are projected one parameter chunk at a time, with the projection
regenerated from (seed, tensor, chunk), so memory stays at one chunk of the projection: ``gaussian``
(dense N(0, 1/d)) or ``sketch`` (each coordinate goes to one of d buckets with a random sign; a sparse
Rademacher projection whose cost is linear in the parameter count). Both preserve inner products in
expectation. ``auto`` picks gaussian when P * d <= 2e9.
"""

from __future__ import annotations

import math

import numpy as np

from lmforget.analysis.similarity.texts import task_examples
from lmforget.data.types import TaskSet, UpstreamSet
from lmforget.errors import LmforgetError

_DENSE_BUDGET = 2e9  # P * d multiply-adds per example above which `auto` switches to the sketch
_SKETCH_CACHE_BYTES = 2 ** 31  # keep the sketch hash of models up to ~180M parameters
_BUFFER_FLOATS = 2 ** 26  # per-batch gradient buffer (256 MB of float32)
_CHUNK_FLOATS = 2 ** 24  # one chunk of a dense projection (64 MB of float32)


class GradientProjector:
    """Project flattened parameter gradients to `dim` numbers, one parameter chunk at a time."""

    def __init__(self, params: list, dim: int, seed: int, kind: str = "auto") -> None:
        self.params, self.dim, self.seed = params, dim, seed
        n_params = sum(p.numel() for p in params)
        if kind == "auto":
            kind = "gaussian" if n_params * dim <= _DENSE_BUDGET else "sketch"
        if kind not in ("gaussian", "sketch"):
            raise LmforgetError(f"unknown projection {kind!r}; use auto, gaussian or sketch")
        self.kind, self.n_params = kind, n_params
        self.chunk = max(1, _CHUNK_FLOATS // dim) if kind == "gaussian" else 2 ** 22
        # The sketch's hash (bucket, sign) per parameter is drawn once and kept when it fits in memory
        # (12 bytes a parameter: ~1.6 GB for a 135M model); redrawing it per example cost twice the scatter.
        self._sketch_cache: dict[tuple[int, int], tuple] | None = (
            {} if kind == "sketch" and 12 * n_params <= _SKETCH_CACHE_BYTES else None)

    def _sketch(self, tensor: int, chunk: int, width: int):
        """(bucket int64 [width], sign float32 [width]) for one parameter chunk, seeded and stable."""
        import torch

        key = (tensor, chunk)
        if self._sketch_cache is not None and key in self._sketch_cache:
            return self._sketch_cache[key]
        gen = self._generator(tensor, chunk)
        bucket = torch.randint(0, self.dim, (width,), generator=gen)
        sign = torch.randint(0, 2, (width,), generator=gen).float() * 2 - 1
        if self._sketch_cache is not None:
            self._sketch_cache[key] = (bucket, sign)
        return bucket, sign

    def _generator(self, tensor: int, chunk: int):
        import torch

        state = np.random.SeedSequence([self.seed, tensor, chunk]).generate_state(2, dtype=np.uint64)
        return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))

    def project(self, grads: list) -> "np.ndarray":
        """grads: per parameter a [B, numel] tensor (B examples) -> [B, dim] projected gradients."""
        import torch

        batch = grads[0].shape[0]
        out = torch.zeros(batch, self.dim, dtype=torch.float64)
        out_t = torch.zeros(self.dim, batch, dtype=torch.float64)  # sketch: row-wise scatter is fast
        for t, g in enumerate(grads):
            n = g.shape[1]
            for c, start in enumerate(range(0, n, self.chunk)):
                block = g[:, start:start + self.chunk].float()
                width = block.shape[1]
                if self.kind == "gaussian":
                    R = torch.randn(width, self.dim, generator=self._generator(t, c))
                    out += (block @ R).double() / math.sqrt(self.dim)
                else:
                    bucket, sign = self._sketch(t, c, width)
                    signed = block * sign  # exact: sign is +-1
                    for r in range(batch):  # a weighted bincount is the fastest 1-D scatter-add
                        out_t[:, r] += torch.bincount(bucket, weights=signed[r].double(), minlength=self.dim)
        return (out + out_t.T).numpy()


def projected_gradients(model, encoded: list, projector: GradientProjector) -> np.ndarray:
    """[len(encoded), dim]: projected gradient of each example's mean NLL over its scored tokens.

    Examples with no scored token have no loss; their rows are NaN.
    """
    import torch

    params = projector.params
    sizes = [p.numel() for p in params]
    per_batch = max(1, min(len(encoded), _BUFFER_FLOATS // max(1, projector.n_params)))
    device = next(model.parameters()).device
    out = np.full((len(encoded), projector.dim), np.nan)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(encoded), per_batch):
            idx = [i for i in range(start, min(start + per_batch, len(encoded))) if encoded[i].n_scored > 0]
            if not idx:
                continue
            buf = [torch.zeros(len(idx), n, dtype=torch.float32) for n in sizes]
            for b, i in enumerate(idx):
                enc = encoded[i]
                ids = torch.tensor([enc.input_ids], device=device)
                labels = torch.tensor([enc.labels()], device=device)
                model.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    loss = model(input_ids=ids, labels=labels).loss
                    loss.backward()
                for t, p in enumerate(params):
                    if p.grad is not None:
                        buf[t][b] = p.grad.detach().reshape(-1).float().cpu()
            out[idx] = projector.project(buf)
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return out


def gradient_similarity(model, tokenizer, upstream: UpstreamSet, tasks: list[TaskSet], *, dim: int = 1024,
                        seed: int = 0, projection: str = "auto", max_length: int = 256,
                        max_task_examples: int | None = 64) -> tuple[np.ndarray, str]:
    """[M, N] inner product of each task's mean projected gradient with each example's projected gradient."""
    from lmforget.encoding import encode_task_example, encode_upstream

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise LmforgetError("the model has no trainable parameters to take gradients of")
    projector = GradientProjector(params, dim, seed, projection)
    # one pass over upstream and task examples together: a dense projection is generated once per batch
    encoded = [encode_upstream(tokenizer, e, max_length) for e in upstream]
    spans = []
    for task in tasks:
        chosen = task_examples(task, max_task_examples, seed)
        spans.append((len(encoded), len(encoded) + len(chosen)))
        encoded += [encode_task_example(tokenizer, e, max_length) for e in chosen]
    grads = projected_gradients(model, encoded, projector)
    ups = grads[: len(upstream)]
    rows = []
    for a, b in spans:
        g = grads[a:b]
        ok = np.isfinite(g).all(axis=1)
        rows.append(g[ok].mean(axis=0) if ok.any() else np.full(dim, np.nan))
    return np.stack(rows) @ ups.T, f"{projector.kind} projection to {dim} dims of {projector.n_params:,} parameters"
