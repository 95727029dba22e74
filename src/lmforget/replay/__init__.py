"""Mitigating forgetting with targeted replay (docs/protocol.md section 6, the paper's Figure 5).

Storage policy (what may be replayed): `heldout.split_heldout` keeps a fixed-seed evaluation set
out of every mixture. Selection strategy (how the pool is ranked): `selection` (random, softmax,
top-n, MIR best-of-G). Score sources: `scores` (oracle row, offline completion, file) and `online`
(probe mid-training, then swap). `mixture` builds the training set; `study` runs the comparison;
`replay_set` writes a replay set for a user's own trainer.
"""

from lmforget.replay.heldout import HeldoutSplit, check_disjoint, split_heldout
from lmforget.replay.mixture import ReplayMixture, mixture_steps, n_replay, replay_stretch
from lmforget.replay.selection import STRATEGIES, select

__all__ = ["HeldoutSplit", "ReplayMixture", "STRATEGIES", "check_disjoint", "mixture_steps", "n_replay",
           "replay_stretch", "select", "split_heldout"]
