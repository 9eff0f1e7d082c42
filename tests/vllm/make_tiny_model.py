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
# Qwen/Hermes style: tools listed in the system turn, calls as <tool_call>{json}</tool_call>.
CHAT_TEMPLATE = Path(__file__).with_name("chat_template.jinja")


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
    fast.chat_template = CHAT_TEMPLATE.read_text()
    fast.save_pretrained(out)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64,
        max_position_embeddings=16384, tie_word_embeddings=True,
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"), torch_dtype="float32",
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    size = sum(p.numel() for p in model.parameters())
    print(f"tiny model in {out}: vocab {len(fast)}, {size} parameters")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
