"""Fine-tune the local LLM (Gemma 3 270M base) to *understand* a turn: LoRA on CPU.

`radpilot models finetune-llm` runs `run()`: it rebuilds the data (`llm_data.py`, labelled by
the teacher the caller passes: the embedded recognizer), trains a LoRA adapter with a fixed
seed, evaluates it on the held-out groups and on the hand-labelled questions of
`llm_fresh_questions.yaml`, and writes the adapter, the data, the metrics and a model card to
`<model dir>/gemma-3-270m-understanding/`.

The model reads one line of dialogue state and the question and writes the compact JSON of
`llm_data.UnderstandingLabel`. Training computes the language-model head only on the answer's
tokens (the head is 262,144 wide: on all prompt tokens it would cost more than the layers).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from radpilot.llm.local import UNDERSTANDING_ADAPTER
from radpilot.training.llm_data import (
    JSON_SCHEMA,
    Dataset,
    Row,
    State,
    Teacher,
    UnderstandingLabel,
    build_dataset,
    format_prompt,
    parse_output,
)

ADAPTER_NAME = UNDERSTANDING_ADAPTER  # the folder and vLLM's served name
FRESH_FILE = Path(__file__).with_name("llm_fresh_questions.yaml")
Progress = Callable[[str], None]


@dataclass
class Recipe:
    seed: int = 0
    per_template: int = 14
    rank: int = 8
    alpha: int = 16
    modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                "down_proj")
    learning_rate: float = 2e-3
    warmup_steps: int = 15
    batch_size: int = 8
    epochs: int = 1
    max_minutes: float = 35.0
    threads: int = 1
    eval_limit: int = 240  # held-out rows generated for the accuracy figures
    latency_items: int = 30  # questions timed one at a time (batch 1)
    max_new_tokens: int = 96

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class Scores:
    items: int = 0
    valid: int = 0
    intent: int = 0
    kinds: int = 0
    exact: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    mistakes: list[dict[str, str]] = field(default_factory=list)

    def add(self, expected: UnderstandingLabel, got: UnderstandingLabel | None,
            question: str, raw: str) -> None:  # fmt: skip
        self.items += 1
        ok_kinds = got is not None and kinds(got) == kinds(expected)
        if got is not None:
            self.valid += 1
            self.intent += got.intent == expected.intent
            self.kinds += ok_kinds
            self.exact += got == expected
        if (got is None or got.intent != expected.intent or not ok_kinds) and len(
            self.mistakes
        ) < 25:
            self.mistakes.append({"question": question, "expected": expected.to_json(),
                                  "got": raw[:300]})  # fmt: skip

    def summary(self) -> dict[str, Any]:
        n = max(self.items, 1)
        lat = sorted(self.latencies_ms)
        out: dict[str, Any] = {
            "items": self.items,
            "json_valid": round(self.valid / n, 4),
            "intent_accuracy": round(self.intent / n, 4),
            "target_kind_accuracy": round(self.kinds / n, 4),
            "exact_match": round(self.exact / n, 4),
        }
        if lat:
            out["latency_ms_p50"] = round(statistics.median(lat), 1)
            out["latency_ms_p95"] = round(lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)],
                                          1)  # fmt: skip
            out["latency_items"] = len(lat)
        out["mistakes"] = self.mistakes
        return out


def kinds(label: UnderstandingLabel) -> tuple[str, ...]:
    return tuple(t.kind for t in label.targets)


# ---------------------------------------------------------------------------------------
# Model plumbing (torch, transformers and peft are imported here, not at module import).


def _tokenize(tokenizer: Any, prompt: str, completion: str | None = None) -> tuple[list[int],
                                                                                   list[int]]:
    ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False).input_ids]
    if completion is None:
        return ids, []
    answer = [*tokenizer(completion, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
    return ids, answer


def _batches(encoded: list[tuple[list[int], list[int]]], size: int, seed: int) -> list[list[int]]:
    """Indices grouped by length (little padding), the batches shuffled with the seed."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    random.Random(seed).shuffle(batches)
    return batches


def train_adapter(model_dir: Path, rows: Sequence[Row], out: Path, recipe: Recipe,
                  progress: Progress) -> dict[str, Any]:  # fmt: skip
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=0.0,
                        target_modules=list(recipe.modules), task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(base, config)  # adapter weights in float32 (peft's autocast)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    encoded = [_tokenize(tokenizer, r.prompt(), r.completion()) for r in rows]
    prompt_tokens = [len(p) for p, _ in encoded]
    batches = [b for epoch in range(recipe.epochs)
               for b in _batches(encoded, recipe.batch_size, recipe.seed + epoch)]  # fmt: skip
    total = len(batches)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=recipe.learning_rate, weight_decay=0.0)  # fmt: skip

    def rate(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        return max(0.05, 1 - (step - recipe.warmup_steps) / max(1, total - recipe.warmup_steps))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    inner: Any = model.get_base_model()
    model.train()
    start = time.monotonic()
    losses: list[float] = []
    steps = 0
    progress(f"training LoRA r={recipe.rank} on {', '.join(recipe.modules)}: {trainable:,} "
             f"trainable parameters, {len(rows)} rows, {total} steps of {recipe.batch_size}, "
             f"{recipe.threads} thread(s)")  # fmt: skip
    for steps, batch in enumerate(batches, start=1):
        width = max(len(encoded[i][0]) + len(encoded[i][1]) for i in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, i in enumerate(batch):
            prompt, answer = encoded[i]
            sequence = prompt + answer
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
            labels[row, len(prompt) : len(sequence)] = torch.tensor(answer)
        hidden = inner.model(input_ids=ids, attention_mask=mask).last_hidden_state
        targets = labels[:, 1:]
        where = targets != -100
        logits = inner.lm_head(hidden[:, :-1][where]).float()
        loss = torch.nn.functional.cross_entropy(logits, targets[where])
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        elapsed = time.monotonic() - start
        if steps % 10 == 0 or steps == total:
            recent = sum(losses[-10:]) / len(losses[-10:])
            eta = elapsed / steps * (total - steps)
            progress(f"step {steps}/{total} loss {recent:.3f} {elapsed / 60:.1f} min "
                     f"(about {eta / 60:.1f} min left)")  # fmt: skip
        if elapsed > recipe.max_minutes * 60:
            progress(f"stopping at the time limit ({recipe.max_minutes} min) after {steps} steps")
            break
    wall = time.monotonic() - start
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    return {
        "steps": steps, "planned_steps": total, "batch_size": recipe.batch_size,
        "rows": len(rows), "trainable_parameters": trainable,
        "wall_clock_s": round(wall, 1), "threads": recipe.threads,
        "first_loss": round(sum(losses[:10]) / max(1, len(losses[:10])), 4),
        "final_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4),
        "prompt_tokens_mean": round(statistics.mean(prompt_tokens), 1),
        "prompt_tokens_max": max(prompt_tokens),
        "stopped_at_time_limit": steps < total,
    }  # fmt: skip


class Understander:
    """The fine-tuned model as a function (question, state) -> raw text, on CPU with
    transformers (greedy). The adapter is merged into the bf16 weights for speed."""

    def __init__(self, model_dir: Path, adapter: Path, threads: int = 1,
                 max_new_tokens: int = 96) -> None:  # fmt: skip
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
        self.model = PeftModel.from_pretrained(base, adapter).merge_and_unload().eval()
        self.max_new_tokens = max_new_tokens

    def generate(self, questions: Sequence[tuple[str, State]]) -> list[str]:
        torch = self.torch
        prompts_ids = [_tokenize(self.tokenizer, format_prompt(q, s))[0] for q, s in questions]
        width = max(len(p) for p in prompts_ids)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts_ids])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts_ids])
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                      max_new_tokens=self.max_new_tokens, top_p=None, top_k=None,
                                      eos_token_id=self.tokenizer.eos_token_id,
                                      pad_token_id=pad)  # fmt: skip
        return [str(self.tokenizer.decode(row[width:], skip_special_tokens=True)) for row in out]


class ServedUnderstander:
    """The adapter served by vLLM (`python -m radpilot.llm.local --with-adapter`): one
    completion per question, greedy, JSON-schema guided (`structured_outputs`)."""

    def __init__(self, url: str, model: str, max_new_tokens: int = 96) -> None:
        self.url, self.model, self.max_new_tokens = url.rstrip("/"), model, max_new_tokens

    def generate(self, questions: Sequence[tuple[str, State]]) -> list[str]:
        import httpx

        texts = []
        for question, state in questions:
            reply = httpx.post(f"{self.url}/completions", timeout=120, json={
                "model": self.model, "prompt": format_prompt(question, state),
                "max_tokens": self.max_new_tokens, "temperature": 0,
                "structured_outputs": {"json": JSON_SCHEMA},
            })  # fmt: skip
            reply.raise_for_status()
            texts.append(str(reply.json()["choices"][0]["text"]))
        return texts


def evaluate(understander: Understander | ServedUnderstander,
             cases: Sequence[tuple[str, State, UnderstandingLabel]],
             *, batch_size: int = 8, latency_items: int = 0) -> Scores:  # fmt: skip
    scores = Scores()
    for start in range(0, len(cases), batch_size):
        chunk = cases[start : start + batch_size]
        raws = understander.generate([(q, s) for q, s, _ in chunk])
        for (question, _, expected), raw in zip(chunk, raws, strict=True):
            scores.add(expected, parse_output(raw), question, raw)
    for question, state, _ in cases[:latency_items]:
        begin = time.perf_counter()
        understander.generate([(question, state)])
        scores.latencies_ms.append((time.perf_counter() - begin) * 1000)
    return scores


def score_teacher(teacher: Teacher,
                  cases: Sequence[tuple[str, State, UnderstandingLabel]]) -> Scores:  # fmt: skip
    scores = Scores()
    for question, state, expected in cases:
        begin = time.perf_counter()
        got = teacher(question, state)
        scores.latencies_ms.append((time.perf_counter() - begin) * 1000)
        scores.add(expected, got, question, got.to_json())
    return scores


def fresh_cases() -> list[tuple[str, State, UnderstandingLabel]]:
    """The hand-labelled questions (written for this check, in clinicians' shorthand)."""
    import yaml

    from radpilot.training.llm_data import TargetLabel

    cases = []
    for entry in yaml.safe_load(FRESH_FILE.read_text())["questions"]:
        state = State(finding=entry.get("focus"), intent=entry.get("last"))
        targets = tuple(TargetLabel(kind=t["kind"], subject=t.get("subject", ""),
                                    closed=t.get("closed", False), side=t.get("side"))
                        for t in entry["targets"])  # fmt: skip
        cases.append((entry["q"], state, UnderstandingLabel(intent=entry["intent"],
                                                            targets=targets)))  # fmt: skip
    return cases


def _cases(rows: Sequence[Row]) -> list[tuple[str, State, UnderstandingLabel]]:
    return [(r.item.question, r.item.state, r.label) for r in rows]


def _write_data(dataset: Dataset, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "held_out"):
        with (folder / f"{split}.jsonl").open("w") as handle:
            for row in dataset.split(split):
                handle.write(json.dumps(row.as_dict(), ensure_ascii=False) + "\n")


def run(model_dir: Path, out: Path, teacher: Teacher, recipe: Recipe, progress: Progress, *,
        train: bool = True,
        served: ServedUnderstander | None = None) -> dict[str, Any]:  # fmt: skip
    """Rebuild the data, train (unless `train` is False: evaluate the adapter in `out`),
    evaluate, and write the card. Returns the metrics. With `served`, only evaluate the adapter
    as vLLM serves it (metrics `held_out_vllm`, `fresh_vllm`, added to metrics.json)."""
    if served is not None:
        measured = evaluate_served(out, teacher, recipe, served, progress)
        write_card(out, model_dir, measured)
        return measured
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    progress(f"composing and labelling questions (seed {recipe.seed})")
    dataset = build_dataset(teacher, recipe.seed, per_template=recipe.per_template,
                            progress=progress)  # fmt: skip
    progress(f"data: {json.dumps(dataset.stats)}")
    _write_data(dataset, out / "data")
    metrics: dict[str, Any] = {"recipe": recipe.as_dict(), "data": dataset.stats}
    if train:
        metrics["training"] = train_adapter(model_dir, dataset.split("train"), out, recipe,
                                            progress)  # fmt: skip
    else:
        previous = out / "metrics.json"
        if previous.is_file():
            metrics["training"] = json.loads(previous.read_text()).get("training")
    progress("evaluating the adapter (greedy, transformers on CPU)")
    understander = Understander(model_dir, out, recipe.threads, recipe.max_new_tokens)
    held = dataset.split("held_out")
    sample = random.Random(recipe.seed).sample(held, min(recipe.eval_limit, len(held)))
    begin = time.monotonic()
    metrics["held_out"] = evaluate(understander, _cases(sample),
                                   latency_items=recipe.latency_items).summary()  # fmt: skip
    metrics["held_out"]["two_part_items"] = sum(r.item.parts == 2 for r in sample)
    progress(f"held out: {_short(metrics['held_out'])} ({time.monotonic() - begin:.0f} s)")
    fresh = fresh_cases()
    metrics["fresh_model"] = evaluate(understander, fresh, latency_items=len(fresh)).summary()
    progress(f"hand-labelled, model: {_short(metrics['fresh_model'])}")
    metrics["fresh_recognizer"] = score_teacher(teacher, fresh).summary()
    progress(f"hand-labelled, embedded recognizer: {_short(metrics['fresh_recognizer'])}")
    metrics["held_out_recognizer"] = {
        "note": "the recognizer labelled the held-out rows (it is the teacher): 1.0 by "
                "construction", "intent_accuracy": 1.0, "target_kind_accuracy": 1.0}  # fmt: skip
    metrics["total_wall_clock_s"] = round(time.monotonic() - started, 1)
    metrics["machine"] = {"cpu": platform.processor() or platform.machine(),
                          "cores_visible": os.cpu_count(), "torch_threads": recipe.threads}
    metrics["date"] = datetime.now(UTC).date().isoformat()
    files = list(out.glob("adapter_model.safetensors"))
    metrics["adapter_bytes"] = files[0].stat().st_size if files else None
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_card(out, model_dir, metrics)
    return metrics


def evaluate_served(out: Path, teacher: Teacher, recipe: Recipe, served: ServedUnderstander,
                    progress: Progress) -> dict[str, Any]:  # fmt: skip
    dataset = build_dataset(teacher, recipe.seed, per_template=recipe.per_template)
    held = dataset.split("held_out")
    sample = random.Random(recipe.seed).sample(held, min(recipe.eval_limit, len(held)))
    path = out / "metrics.json"
    metrics: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    progress(f"evaluating the served adapter at {served.url} ({len(sample)} held-out rows)")
    metrics["held_out_vllm"] = evaluate(served, _cases(sample),
                                        latency_items=recipe.latency_items).summary()  # fmt: skip
    progress(f"held out, vLLM: {_short(metrics['held_out_vllm'])}")
    fresh = fresh_cases()
    metrics["fresh_vllm"] = evaluate(served, fresh, latency_items=len(fresh)).summary()
    progress(f"hand-labelled, vLLM: {_short(metrics['fresh_vllm'])}")
    path.write_text(json.dumps(metrics, indent=2))
    return metrics


def _short(summary: dict[str, Any]) -> str:
    keys = ("items", "json_valid", "intent_accuracy", "target_kind_accuracy", "exact_match",
            "latency_ms_p50")  # fmt: skip
    return ", ".join(f"{k} {summary[k]}" for k in keys if k in summary)


def write_card(out: Path, model_dir: Path, metrics: dict[str, Any]) -> None:
    base_card: dict[str, Any] = {}
    if (model_dir / "model_card.json").is_file():
        base_card = json.loads((model_dir / "model_card.json").read_text())
    training = metrics.get("training") or {}
    card: dict[str, Any] = {
        "name": ADAPTER_NAME,
        "kind": "LoRA adapter (peft) for Gemma 3 270M base",
        "base_model": {"folder": model_dir.name, "source": base_card.get("source"),
                       "sha256": base_card.get("sha256")},
        "task": "turn understanding: one line of dialogue state (finding in focus, last "
                "intent) and the question -> compact JSON {intent, targets[kind, subject, "
                "closed, side]}, one target per question part",
        "output_schema": JSON_SCHEMA,
        "data": {
            "sources": ["radpilot/prompts/intents.yaml (exemplars)",
                        "radpilot/prompts/targets.yaml (vocabularies)",
                        "radpilot/prompts/findings.yaml (finding synonyms)",
                        "templates and clinical-context lines in radpilot/training/llm_data.py"],
            "labels": "the embedded recognizer (radpilot.agent.understanding.IntentRecognizer)"
                      " as teacher",
            "excluded": "radpilot/evals/ (scenarios and qa_questions.yaml) is never read",
            "split": "15% of the groups (one exemplar or one template) of each source family "
                     "held out",
            **metrics.get("data", {}),
        },
        "recipe": metrics.get("recipe"),
        "compute": {**training, "machine": metrics.get("machine")},
        "metrics": {k: {m: v for m, v in metrics[k].items() if m != "mistakes"}
                    for k in ("held_out", "fresh_model", "fresh_recognizer", "held_out_vllm",
                              "fresh_vllm") if k in metrics},
        "licence": "Gemma Terms of Use (https://ai.google.dev/gemma/terms): the adapter is a "
                   "Model Derivative of Gemma; its use is subject to the Gemma terms and the "
                   "Gemma Prohibited Use Policy.",
        "intended_use": "research and engineering of radpilot's LLM path: a candidate for the "
                        "understanding step, behind schema validation, with the embedded "
                        "recognizer as fallback",
        "limits": [
            "trained on the embedded recognizer's labels: it can only approach, not exceed, "
            "that teacher on what the teacher gets wrong",
            "templated English questions; no real clinical text; no resolution beyond the "
            "finding in focus and the last intent",
            "not a medical device; it reads no image and says nothing about the patient",
        ],
        "date": metrics.get("date"),
    }  # fmt: skip
    (out / "model_card.json").write_text(json.dumps(card, indent=2))
    held = card["metrics"].get("held_out", {})
    fresh = card["metrics"].get("fresh_model", {})
    teacher = card["metrics"].get("fresh_recognizer", {})
    lines = [
        f"# {ADAPTER_NAME}", "",
        "LoRA adapter (peft) on **Gemma 3 270M base** that turns one line of dialogue state "
        "and a clinician's question into radpilot's structured understanding (JSON: intent, "
        "one target per question part). Built by `radpilot models finetune-llm`.", "",
        "Licence: [Gemma Terms of Use](https://ai.google.dev/gemma/terms) (a Model Derivative "
        "of Gemma).", "",
        "| figure | value |", "|---|---|",
        f"| training rows / steps | {training.get('rows')} / {training.get('steps')} |",
        f"| training wall-clock | {training.get('wall_clock_s')} s on "
        f"{training.get('threads')} CPU thread(s) |",
        f"| held-out JSON valid / intent / target kinds | {held.get('json_valid')} / "
        f"{held.get('intent_accuracy')} / {held.get('target_kind_accuracy')} |",
        f"| held-out latency p50 (batch 1, CPU) | {held.get('latency_ms_p50')} ms |",
        f"| hand-labelled: model intent / kinds | {fresh.get('intent_accuracy')} / "
        f"{fresh.get('target_kind_accuracy')} |",
        f"| hand-labelled: embedded recognizer intent / kinds | "
        f"{teacher.get('intent_accuracy')} / {teacher.get('target_kind_accuracy')} |",
        "", "Data, recipe, compute and limits: `model_card.json`; figures: `metrics.json`.",
    ]  # fmt: skip
    (out / "README.md").write_text("\n".join(lines) + "\n")
