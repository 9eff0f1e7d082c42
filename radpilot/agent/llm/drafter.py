"""LLM drafting of the answer's wording, under the composer's contract.

With `RADPILOT_LLM_DRAFT=true` the LLM may reword the composer's claims through one strict
`draft_answer` call: claims with evidence ids (an enum of this turn's ids) and a certainty. The
draft replaces the composer's claims only if the verifier keeps every drafted claim and each
one says something checkable (a finding or a number found in its cited evidence); otherwise the
composer's own answer stands and the trace says why. The verifier has the last word either way.
"""

from __future__ import annotations

import json
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from radpilot import prompts
from radpilot.agent.llm.schemas import TEXT_PATTERN
from radpilot.agent.types import Answer, Certainty, Claim, StudyRef
from radpilot.agent.verifier import Verifier, numbers_in, numbers_written
from radpilot.core.contracts import Evidence
from radpilot.llm.client import ChatModel, ChatRequest, LLMUnavailableError
from radpilot.settings import Settings

DRAFT_TOOL = "draft_answer"
# A claim may be longer than one bounded repeat that xgrammar compiles: two halves.
CLAIM_PATTERN = TEXT_PATTERN.replace("%d", "119").rstrip("$") + "[A-Za-z0-9 ,.;:'?()/%+_-]{0,120}$"


class DraftOutcome(BaseModel):
    used: bool
    reason: str
    drafted: int = 0


class Draft(BaseModel):
    claims: list[Claim]


def draft_tool(evidence_ids: list[str], most: int) -> dict[str, Any]:
    claim = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "pattern": CLAIM_PATTERN},
            "evidence": {"type": "array", "items": {"type": "string", "enum": evidence_ids},
                         "minItems": 1, "maxItems": 3},
            "certainty": {"type": "string", "enum": list(get_args(Certainty))},
        },
        "required": ["text", "evidence", "certainty"],
        "additionalProperties": False,
    }  # fmt: skip
    parameters = {"type": "object", "additionalProperties": False, "required": ["claims"],
                  "properties": {"claims": {"type": "array", "items": claim, "minItems": 1,
                                            "maxItems": most}}}  # fmt: skip
    return {"type": "function", "function": {
        "name": DRAFT_TOOL, "description": "The answer's claims, each citing its evidence.",
        "parameters": parameters, "strict": True}}  # fmt: skip


class Drafter:
    def __init__(self, chat: ChatModel, verifier: Verifier) -> None:
        self.chat = chat
        self.verifier = verifier
        self._prompt: str = prompts.load("planner")["draft"]

    def draft(
        self, question: str, answer: Answer, ledger: dict[str, Evidence], studies: list[StudyRef]
    ) -> tuple[Answer, DraftOutcome]:
        # The direct answer ("Yes: ...") stays first and verbatim: only the rest is reworded.
        direct = [c for c in answer.claims if c.answers is not None]
        rest = [c for c in answer.claims if c.answers is None]
        cited = [c for c in rest if c.evidence]
        if not cited or answer.clarification:
            return answer, DraftOutcome(used=False, reason="nothing to reword")
        ids = sorted({i for c in cited for i in c.evidence})
        statements = "\n".join(f"- {c.text} [{', '.join(c.evidence)}; {c.certainty}]"
                               for c in rest)  # fmt: skip
        request = ChatRequest(
            messages=[{"role": "user",
                       "content": self._prompt.format(question=question, claims=statements)}],
            tools=[draft_tool(ids, len(rest) + 1)],
            tool_choice={"type": "function", "function": {"name": DRAFT_TOOL}},
            max_tokens=1200,
        )  # fmt: skip
        try:
            reply = self.chat.complete(request)
            call = reply.tool_calls[0] if reply.tool_calls else None
            if call is None or call.name != DRAFT_TOOL:
                return answer, DraftOutcome(used=False, reason="the LLM wrote no draft")
            draft = Draft.model_validate(json.loads(call.arguments))
        except LLMUnavailableError as error:
            return answer, DraftOutcome(used=False, reason=error.message)
        except (ValueError, ValidationError) as error:
            reason = f"the draft is malformed: {str(error).splitlines()[0]}"
            return answer, DraftOutcome(used=False, reason=reason)
        vague = [c.text for c in draft.claims if not substantive(c, ledger, self.verifier)]
        drafted = answer.model_copy(update={"claims": [*direct, *draft.claims]})
        _, report = self.verifier.verify(drafted, ledger, studies)
        if vague or report.removed:
            failed = len(vague) + len(report.removed)
            reason = f"{failed} drafted statement(s) failed verification"
            return answer, DraftOutcome(used=False, drafted=len(draft.claims), reason=reason)
        kept = [c for c in rest if not c.evidence]  # fixed statements stay verbatim
        return answer.model_copy(update={"claims": [*direct, *draft.claims, *kept]}), DraftOutcome(
            used=True, reason="every drafted statement verified", drafted=len(draft.claims)
        )


def substantive(claim: Claim, ledger: dict[str, Evidence], verifier: Verifier) -> bool:
    """Whether a drafted claim names a finding or a number of its cited evidence (a claim that
    says nothing checkable would pass any verifier)."""
    cited = [ledger[i] for i in claim.evidence if i in ledger]
    names = set(verifier.vocabulary.findings_in(claim.text))
    known = {row.get("name") for e in cited for row in e.values.get("findings", [])
             if isinstance(row, dict)}  # fmt: skip
    numbers = {round(v, 2) for e in cited for v in numbers_in(e.values)}
    written = {round(float(n), 2) for n in numbers_written(claim.text)}
    return bool(names & known) or bool(written & numbers)


def drafter_for(settings: Settings, verifier: Verifier) -> Drafter | None:
    """A drafter when `RADPILOT_LLM_DRAFT` is on and an LLM is configured."""
    if not settings.llm_draft or settings.llm_url is None:
        return None
    from radpilot.llm.factory import chat_client

    return Drafter(chat_client(settings.llm_url, settings.llm_model, settings, "llm"), verifier)
