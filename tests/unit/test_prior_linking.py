"""Studies of one pseudonymous patient are linked in time; nothing else is ever linked."""

from datetime import date

from radpilot.agent.service import link_by_patient
from radpilot.agent.types import StudyRef


def ref(study_id: str, key: str | None, acquired: date | None, role: str = "current") -> StudyRef:
    return StudyRef(study_id=study_id, role=role, patient_key=key, acquired=acquired)  # type: ignore[arg-type]


def roles(studies: list[StudyRef]) -> dict[str, str]:
    return {s.study_id: s.role for s in link_by_patient(studies)}


def test_the_earlier_study_of_the_same_patient_becomes_the_prior() -> None:
    studies = [ref("new", "pk_a", date(2024, 3, 1)), ref("old", "pk_a", date(2024, 1, 1))]
    assert roles(studies) == {"new": "current", "old": "prior"}


def test_a_study_of_the_same_day_is_never_made_a_prior() -> None:
    # The same DICOM uploaded twice (or two views of one day) must not be compared with itself.
    same_day = [ref("a", "pk_a", date(2024, 3, 1)), ref("b", "pk_a", date(2024, 3, 1))]
    assert roles(same_day) == {"a": "current", "b": "current"}


def test_different_patients_unknown_keys_or_dates_are_never_linked() -> None:
    assert roles([ref("a", "pk_a", date(2024, 3, 1)), ref("b", "pk_b", date(2024, 1, 1))]) == {
        "a": "current", "b": "current"
    }  # fmt: skip
    assert roles([ref("a", None, date(2024, 3, 1)), ref("b", None, date(2024, 1, 1))]) == {
        "a": "current", "b": "current"
    }  # fmt: skip
    assert roles([ref("a", "pk_a", None), ref("b", "pk_a", date(2024, 1, 1))]) == {
        "a": "current", "b": "current"
    }  # fmt: skip


def test_a_role_the_user_gave_is_kept() -> None:
    studies = [ref("a", "pk_a", date(2024, 1, 1)), ref("b", "pk_a", date(2024, 3, 1), "prior")]
    assert roles(studies) == {"a": "current", "b": "prior"}
