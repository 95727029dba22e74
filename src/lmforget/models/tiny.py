"""Tiny models (``tiny:<arch>``): random weights from a seed and a byte-level BPE trained on a built-in corpus,
so tests and the ``tiny`` recipe run offline in seconds on the paper's architectures (Llama, GPT-2, OLMo, OLMo2,
GPT-NeoX/Pythia, MPT)."""

from __future__ import annotations

import os
import tempfile

from lmforget.encoding import DEFAULT_CHAT_TEMPLATE
from lmforget.errors import LmforgetError
from lmforget.resources import cache_dir

TINY_ARCHS = ("llama", "gpt2", "olmo", "olmo2", "gpt_neox", "mpt")
EOS = "<|endoftext|>"
PAD = "<|pad|>"
TINY_VOCAB = 768
TINY_MAX_LENGTH = 2048
# Bump when the corpus or trainer settings change: it names the cached tokenizer file.
TOKENIZER_VERSION = 1

# Built-in training text for the tiny tokenizer: plain English of the kind the fixtures hold, the chat
# markers of the default template, digits and punctuation, so common words become single tokens.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A language model predicts the next token of a text.
Fine-tuning a model on a new task can make it forget what it learned before. We measure forgetting
as the increase of the negative log-likelihood of upstream examples after fine-tuning.
The forgetting matrix has one row per task and one column per upstream example; it is close to low rank.
Matrix completion predicts the forgetting of an unseen task from a few observed entries.
Replay mixes upstream examples into the fine-tuning data to reduce forgetting.
Question: What is the capital of France? Answer: Paris. Question: How many legs does a spider have?
Answer: Eight. Translate the sentence into German. Summarize the following article in one sentence.
Is the review positive or negative? The movie was wonderful and the actors were great. Negative.
Wikipedia is a free online encyclopedia written by volunteers. The river flows through the city
and into the sea. In 1905 the scientist published four papers that changed physics forever.
The population of the town was 12,345 at the 2010 census. It is located in the north of the country.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 20 50 100 1000 2024. Dates like 12 March 1999 and 3/4/2021.
def main(): return sum(x * 2 for x in range(10))  # code, brackets {} [] () <> and symbols + - = * /
She said, "I will be there at noon!" He asked: 'Why not?' They're here; we've seen it; it's fine.
Instructions: read the definition, then answer the question. Definition: classify the sentiment.
Input: The food was cold and the service was slow. Output: negative. Input: I love this phone.
Output: positive. Explain your reasoning step by step, then give the final answer on its own line.
Science, history, geography, mathematics, literature, music, art, sports, politics and economics.
Animals such as cats, dogs, horses, birds and fish live on every continent except Antarctica.
The teacher asked the students to write an essay about their summer holidays by next Monday.
<|system|>
You are a helpful assistant.
<|user|>
Write a short poem about the ocean.
<|assistant|>
Waves of blue and silver light, rolling softly through the night.
"""



def _train_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = _CORPUS.splitlines()
    tok.train_from_iterator([ln for ln in lines for _ in range(3)], trainer=trainer)
    return tok


def load_tiny_tokenizer():
    """The tiny models' byte-level BPE (fast, with offsets, pad and EOS), trained once and cached."""
    from transformers import PreTrainedTokenizerFast

    path = cache_dir() / "tokenizers" / f"tiny-bpe-v{TOKENIZER_VERSION}-{TINY_VOCAB}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tok.", suffix=".json", dir=path.parent)
        os.close(fd)
        try:
            _train_tiny_tokenizer().save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        eos_token=EOS,
        bos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_max_length=TINY_MAX_LENGTH,
    )
    tok.chat_template = DEFAULT_CHAT_TEMPLATE
    return tok


def tiny_config(arch: str, tokenizer, **overrides):
    """A ~1-5M parameter config of `arch` sized to `tokenizer` (hidden 64, 2 layers, 4 heads by default).

    `overrides` use the generic names hidden_size / num_hidden_layers / num_attention_heads /
    intermediate_size and are translated for GPT-2 and MPT, whose configs name them differently.
    """
    import transformers as tf

    if arch not in TINY_ARCHS:
        raise LmforgetError(f"unknown tiny model 'tiny:{arch}' "
                            f"(choose one of: {', '.join('tiny:' + a for a in TINY_ARCHS)})")
    h = int(overrides.pop("hidden_size", 64))
    n_layers = int(overrides.pop("num_hidden_layers", 2))
    n_heads = int(overrides.pop("num_attention_heads", 4))
    inter = int(overrides.pop("intermediate_size", 4 * h))
    ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    common = dict(hidden_size=h, num_hidden_layers=n_layers, num_attention_heads=n_heads,
                  intermediate_size=inter, max_position_embeddings=TINY_MAX_LENGTH, **ids)
    if arch == "llama":
        cfg = tf.LlamaConfig(num_key_value_heads=max(1, n_heads // 2), **common)
    elif arch == "olmo":
        cfg = tf.OlmoConfig(**common)
    elif arch == "olmo2":
        cfg = tf.Olmo2Config(**common)
    elif arch == "gpt_neox":
        cfg = tf.GPTNeoXConfig(**common)
    elif arch == "gpt2":
        cfg = tf.GPT2Config(n_embd=h, n_layer=n_layers, n_head=n_heads, n_inner=inter,
                            n_positions=TINY_MAX_LENGTH, **ids)
    else:  # mpt: ALiBi positions, no position embeddings
        cfg = tf.MptConfig(d_model=h, n_layers=n_layers, n_heads=n_heads, expansion_ratio=max(1, inter // h),
                           max_seq_len=TINY_MAX_LENGTH, **ids)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def build_tiny(arch: str, tokenizer, seed: int):
    import torch
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(arch, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    return model
