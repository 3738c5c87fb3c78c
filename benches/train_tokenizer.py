"""Train a small byte-level BPE tokenizer offline (no hub access), for
running aiperf against the mock: `python benches/train_tokenizer.py OUT_DIR`.
Needs the `tokenizers` package (it comes with aiperf's dependencies)."""
import json
import os
import sys

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
data = json.load(open(os.path.join(here, "..", "data", "novel.json")))
text = [s for v in data.values() for s in v] * 20 + ["the quick brown fox jumps over the lazy dog " * 10] * 50
tok = Tokenizer(models.BPE(unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel()
trainer = trainers.BpeTrainer(
    vocab_size=2000,
    special_tokens=["[UNK]", "<|endoftext|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
)
tok.train_from_iterator(text, trainer)
tok.save(os.path.join(out, "tokenizer.json"))
json.dump(
    {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "eos_token": "<|endoftext|>", "model_max_length": 8192},
    open(os.path.join(out, "tokenizer_config.json"), "w"),
)
