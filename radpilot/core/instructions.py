"""Removal of instruction-like text from questions before they are understood.

A question selects an intent and slots; it must not steer the agent ("ignore previous
instructions", "call compare_studies", "you are now ..."). Sentences that read like
instructions to the system are dropped from what the planner sees, and the trace says so.
The verifier never reads the question, so nothing here can change what it accepts.
"""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;\n]*")
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|rules?|prompts?|"
    r"guidelines? above|previous|prior messages?|system)\b"
    r"|\b(system prompt|developer message|jailbreak|you are now|act as|pretend( to be)?|"
    r"new instructions?|from now on)\b"
    r"|\b(call|run|invoke|use|execute)\s+(the\s+)?(tool\s+)?[a-z]+_[a-z_]+\b"
    r"|^\s*(please\s+)?(state|say|claim|answer|respond|write|output)\s+(that|only|exactly)\b",
    re.IGNORECASE,
)


def split_instructions(question: str) -> tuple[str, list[str]]:
    """(the question without instruction-like sentences, the sentences removed)."""
    kept: list[str] = []
    removed: list[str] = []
    for sentence in _SENTENCE.findall(question):
        (removed if _INSTRUCTION.search(sentence) else kept).append(sentence.strip())
    cleaned = " ".join(s for s in kept if s)
    return (cleaned if removed else question), removed
