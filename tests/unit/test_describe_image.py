"""A generative description counts only where a specialist tool agrees."""

from __future__ import annotations

from radpilot.agent.composer import Composer
from radpilot.agent.planner import TurnView
from radpilot.agent.types import Slots, StudyRef, Understanding
from radpilot.agent.understanding import Vocabulary
from radpilot.agent.verifier import Verifier
from radpilot.assembly import build_registry
from radpilot.core.contracts import Evidence
from radpilot.settings import Settings


def row(name: str, probability: float, status: str) -> dict[str, object]:
    # rule-out 0.1, rule-in 0.5: the status given is the band of the probability
    return {"name": name, "probability": probability, "status": status, "threshold": 0.3,
            "rule_out": 0.1, "rule_in": 0.5}


def test_only_findings_the_classifier_agrees_with_become_claims() -> None:
    classified = Evidence(id="E1", kind="model_output", tool="classify_findings",
                          inputs={"study_id": "st_a"},
                          values={"findings": [row("Effusion", 0.81, "present"),
                                               row("Pneumothorax", 0.04, "absent")]})  # fmt: skip
    described = Evidence(id="E2", kind="model_output", tool="describe_image",
                         inputs={"study_id": "st_a"}, values={"text": (
                             "A small left pleural effusion. There is a pneumothorax."),
                             "generative": True})  # fmt: skip
    view = TurnView(
        question="Describe the image.", studies=[StudyRef(study_id="st_a")],
        understanding=Understanding(intent="detect_findings", confidence=1, slots=Slots(),
                                    method="rule"),
        ledger=[classified, described], turn_evidence=["E1", "E2"], step=2,
        available_tools=["classify_findings", "describe_image"],
    )  # fmt: skip
    answer = Composer().compose(view, [])
    confirmed = [c for c in answer.claims if "vision-language" in c.text]
    assert len(confirmed) == 1 and "Effusion" in confirmed[0].text
    assert confirmed[0].evidence == ["E1", "E2"] and confirmed[0].certainty == "likely"
    unconfirmed = [item for item in answer.limitations if item.startswith("Unconfirmed")]
    assert len(unconfirmed) == 1 and "There is a pneumothorax" in unconfirmed[0]
    assert not any("Pneumothorax is" in c.text for c in answer.claims)
    verified, report = Verifier(Vocabulary()).verify(
        answer, {"E1": classified, "E2": described}, view.studies
    )
    assert not report.removed and confirmed[0] in verified.claims


def test_describe_image_is_offered_only_when_a_vlm_is_configured() -> None:
    assert "describe_image" not in build_registry(Settings(vlm_url=None)).names()
    configured = Settings(vlm_url="http://127.0.0.1:9/v1", vlm_model="medgemma")
    assert "describe_image" in build_registry(configured).names()
