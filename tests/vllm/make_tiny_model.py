"""Make a tiny random-weight Qwen2 chat model that vLLM can serve, entirely offline.

Run with the vLLM environment's Python (it has transformers and tokenizers):
    .venv-vllm/bin/python tests/vllm/make_tiny_model.py OUT_DIR

The weights are random (seed 0): the model's words mean nothing. It exists to test the wire —
requests, strict tool schemas, grammar-constrained calls, streaming, repair and fallback —
against a real vLLM server. The 4k-token byte-level BPE tokenizer is trained here on the
project's own prompt and knowledge text; the chat template is Qwen/Hermes style, so vLLM's
`hermes` tool parser reads `<tool_call>{"name": ..., "arguments": ...}</tool_call>`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
           "<tool_response>", "</tool_response>"]  # fmt: skip
CHAT_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
For each call, return <tool_call>{"name": <name>, "arguments": <arguments>}</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}
{%- for call in message.tool_calls or [] %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments if call.function.arguments is string else call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def training_text() -> list[str]:
    files = [*sorted((ROOT / "radpilot" / "prompts").glob("*.yaml")),
             *sorted((ROOT / "radpilot" / "knowledge" / "corpus").rglob("*.md"))]  # fmt: skip
    return [path.read_text(encoding="utf-8") for path in files]


def main(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096, special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tokenizer.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[3:],
    )  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64,
        max_position_embeddings=16384, tie_word_embeddings=True,
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"), torch_dtype="float32",
    )  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(out, safe_serialization=True)
    print(f"tiny model in {out}: vocab {len(fast)}, "
          f"{sum(p.numel() for p in Qwen2ForCausalLM(config).parameters())} parameters")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
