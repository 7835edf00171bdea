"""A tiny random Llama with its own byte-level BPE tokenizer, saved as a Hugging Face folder.

    python examples/make_tiny_llama.py OUT TEXT_FILE

What docs/families.md imports to walk through `llmbricks import hf` without a download: the
folder has what a real checkpoint has (config.json, model.safetensors, tokenizer.json, a
tokenizer_config.json with a Llama-3-style chat template), only with random weights.
"""

import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

out = Path(sys.argv[1])
text = Path(sys.argv[2]).read_text(encoding="utf-8").splitlines()
tokenizer = Tokenizer(models.BPE())
tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tokenizer.decoder = decoders.ByteLevel()
tokenizer.train_from_iterator(text, trainers.BpeTrainer(
    vocab_size=1000, special_tokens=["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                                     "<|end_header_id|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
out.mkdir(parents=True, exist_ok=True)
tokenizer.save(str(out / "tokenizer.json"))
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
            "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
            "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
(out / "tokenizer_config.json").write_text(json.dumps(
    {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
     "eos_token": "<|eot_id|>", "chat_template": TEMPLATE}))
torch.manual_seed(0)
config = LlamaConfig(vocab_size=1024, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                     bos_token_id=0, eos_token_id=1)
LlamaForCausalLM(config).save_pretrained(out)
