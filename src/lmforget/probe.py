"""The probe file: how much a new task made the model forget a few upstream examples.

A probe file is a CSV with the columns ``id,forgetting`` (other columns are ignored): an upstream
example id and its NLL increase in nats per token, fine-tuned minus base. `lmforget probe` writes it
(`measure_probe`); `lmforget forecast` and `lmforget replay-set` read it (`read_probe`). This module
is the one owner of that format (docs/architecture.md, "Probe file").
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lmforget.errors import LmforgetError

if TYPE_CHECKING:
    from lmforget.data.types import UpstreamSet

COLUMNS = ("id", "forgetting")


@dataclass
class Probe:
    """Measured forgetting of a few upstream examples; `extra` holds optional per-id columns to write."""

    ids: list[str]
    forgetting: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def row(self, examples: Sequence[str], source: str = "probe") -> np.ndarray:
        """The probe as a matrix row over `examples`: measured values, NaN elsewhere."""
        index = {str(e): j for j, e in enumerate(examples)}
        missing = [i for i in self.ids if i not in index]
        if missing:
            raise LmforgetError(f"{source}: id {missing[0]!r} is not an upstream example of the matrix "
                                f"({len(missing)} of {len(self.ids)} probe ids are not columns of it)")
        row = np.full(len(index), np.nan)
        row[[index[i] for i in self.ids]] = self.forgetting
        return row


def read_probe(path: str | Path) -> Probe:
    """Read and check a probe file (header with id and forgetting; unique ids; finite numbers)."""
    path = Path(path)
    if not path.is_file():
        raise LmforgetError(f"{path}: no such probe file")
    ids: list[str] = []
    values: list[float] = []
    seen: set[str] = set()
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            if not set(COLUMNS) <= set(fields):
                raise LmforgetError(f"{path}: a probe file needs the columns id,forgetting "
                                    f"(found {', '.join(fields) or 'none'})")
            reader.fieldnames = fields
            for line_no, rec in enumerate(reader, start=2):
                ex, raw = (rec.get("id") or "").strip(), (rec.get("forgetting") or "").strip()
                if not ex:
                    raise LmforgetError(f"{path}:{line_no}: empty id")
                try:
                    value = float(raw)
                except ValueError:
                    raise LmforgetError(f"{path}:{line_no}: forgetting {raw!r} is not a number") from None
                if not math.isfinite(value):
                    raise LmforgetError(f"{path}:{line_no}: forgetting must be finite, got {raw!r}")
                if ex in seen:
                    raise LmforgetError(f"{path}:{line_no}: id {ex!r} appears twice")
                seen.add(ex)
                ids.append(ex)
                values.append(value)
    except UnicodeDecodeError:
        raise LmforgetError(f"{path}: not a UTF-8 CSV file") from None
    except csv.Error as exc:
        raise LmforgetError(f"{path}: not a readable CSV file ({exc})") from None
    if not ids:
        raise LmforgetError(f"{path}: no probe rows; give at least one line 'id,forgetting'")
    return Probe(ids, np.array(values, dtype=np.float64))


def write_probe(probe: Probe, path: str | Path) -> Path:
    """Write `probe` as CSV (id, forgetting, then its extra columns), atomically."""
    from lmforget.atomic import atomic_path

    path = Path(path)
    names = list(probe.extra)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*COLUMNS, *names])
        for k, (ex, value) in enumerate(zip(probe.ids, probe.forgetting.tolist(), strict=True)):
            w.writerow([ex, repr(float(value)), *(_cell(probe.extra[n][k]) for n in names)])
    return path


def _cell(value) -> str:
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def choose_probe_examples(upstream: "UpstreamSet", k: int, seed: int,
                          columns: Sequence[str] | None = None) -> list[int]:
    """Indices of `k` upstream examples drawn without replacement (seeded), among `columns` if given."""
    if k < 1:
        raise LmforgetError(f"-k must be at least 1, got {k}")
    candidates = np.arange(len(upstream))
    if columns is not None:
        allowed = {str(c) for c in columns}
        candidates = np.array([i for i, ex_id in enumerate(upstream.ids) if ex_id in allowed], dtype=np.int64)
        if candidates.size == 0:
            raise LmforgetError("none of the upstream examples is a column of the matrix; give the upstream "
                                "data the matrix was built from (e.g. RUN_DIR/data/upstream.jsonl)")
    if k > candidates.size:
        raise LmforgetError(f"-k {k} is larger than the {candidates.size} upstream examples to draw from")
    from lmforget.predict.protocol import reveal_columns  # the protocol's draw: k columns, no replacement

    return reveal_columns(candidates, k, seed).tolist()


def measure_probe(base: str, finetuned: str, upstream: "UpstreamSet", k: int = 30, seed: int = 0, *,
                  columns: Sequence[str] | None = None, max_length: int | None = 1024,
                  token_budget: int = 16384, batch_size: int = 64, device: str | None = None,
                  dtype: str | None = None, trust_remote_code: bool = False, model_seed: int = 0,
                  progress: bool = True) -> Probe:
    """Score `k` seeded upstream examples under `base` and `finetuned`; forgetting = NLL after - before.

    Both models are scored with the base model's tokenizer, so the text, tokens and truncation of an
    example are identical before and after (docs/protocol.md section 2). Examples with no scored
    token (NaN) are left out of the probe. `model_seed` seeds `tiny:` random base models.
    """
    from lmforget.models import load_model
    from lmforget.scoring import make_scorer, results_arrays

    picks = choose_probe_examples(upstream, k, seed, columns)
    examples = [upstream.examples[i] for i in picks]
    opts = dict(device=device, dtype=dtype, trust_remote_code=trust_remote_code, seed=model_seed)
    nll = {}
    tokenizer = None
    for name, spec in (("base", base), ("fine-tuned", finetuned)):
        model, tok = load_model(spec, **opts)
        tokenizer = tokenizer or tok  # the base tokenizer serves both
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise LmforgetError(f"--model {finetuned}: its vocabulary is smaller than the base model's "
                                "tokenizer; is it a fine-tune of --base?")
        scorer = make_scorer("hf", model, tokenizer, max_length=max_length, token_budget=token_budget,
                             batch_size=batch_size, progress=progress, description=f"scoring {name} model")
        nll[name], n_tokens = results_arrays(scorer.score(examples))
        del model, scorer
    forgetting = nll["fine-tuned"] - nll["base"]
    ok = np.isfinite(forgetting)
    if not ok.any():
        raise LmforgetError("no probe example has a scored token; check --max-length and the upstream data")
    ids = [examples[i].id for i in np.flatnonzero(ok)]
    return Probe(ids, forgetting[ok], extra={"base_nll": nll["base"][ok], "finetuned_nll": nll["fine-tuned"][ok],
                                             "n_tokens": n_tokens[ok].astype(np.int64)})
