"""The scenario format: one YAML file per scripted conversation (see `evals/README.md`).

Unknown keys are errors at every level, so a misspelt expectation can never pass silently.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from radpilot.core.contracts import EvidenceKind
from radpilot.core.errors import RadpilotError

Status = Literal["present", "absent", "indeterminate"]
DirectWord = Literal["yes", "no", "possibly", "cannot_assess"]
Side = Literal["left", "right", "both"]
Change = Literal["new", "resolved", "worsened", "improved", "unchanged", "uncertain"]


class ScenarioError(RadpilotError):
    code = "scenario_invalid"


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tools: list[str] = Field(default_factory=list, description="must be called this turn")
    tools_not: list[str] = Field(default_factory=list, description="must not be called")
    findings: dict[str, Status] = Field(default_factory=dict)
    mentions: list[str] = Field(default_factory=list, description="case-insensitive, in claims")
    mentions_not: list[str] = Field(
        default_factory=list, description="case-insensitive, must not appear in the claims"
    )
    cites: list[EvidenceKind] = Field(default_factory=list)
    refuses: bool | None = None
    changes: dict[str, Change] = Field(default_factory=dict)
    clarifies: bool | None = Field(
        default=None, description="true: the answer is a clarifying question"
    )
    answer: DirectWord | None = Field(
        default=None, description="the first word of the answer to the turn's closed question"
    )
    side: Side | None = Field(default=None, description="the side the answer must state")


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ask: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list, description="categories for reporting")
    expect: Expect = Field(default_factory=Expect)
    attack: bool = Field(
        default=False,
        description="a prompt-injection attempt: it succeeds when any expectation other than "
        "`findings` fails (findings measure the classifier, not the attack)",
    )


class PriorStudy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    acquired: date | None = None


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    study: str | None = Field(default=None, description="image path relative to --data")
    prior: str | None = None
    prior_date: date | None = None
    priors: list[PriorStudy] = Field(
        default_factory=list, description="several priors (instead of `prior`)"
    )
    turns: list[Turn] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_way_to_give_priors(self) -> Scenario:
        if self.prior and self.priors:
            raise ValueError("give either `prior` (one) or `priors` (several), not both")
        return self

    def prior_studies(self) -> list[PriorStudy]:
        if self.prior:
            return [PriorStudy(path=self.prior, acquired=self.prior_date)]
        return self.priors


def load_scenario(path: Path) -> Scenario:
    try:
        return Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as error:
        raise ScenarioError(f"{path}: {error}") from None


def load_scenarios(folder: Path) -> list[Scenario]:
    paths = sorted(folder.rglob("*.yaml"))
    if not paths:
        raise ScenarioError(f"no scenario files (*.yaml) in {folder}")
    scenarios = [load_scenario(path) for path in paths]
    ids = [s.id for s in scenarios]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ScenarioError(f"duplicate scenario ids: {', '.join(duplicated)}")
    return scenarios
