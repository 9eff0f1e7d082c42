"""The PACS client's rules that need no PACS: exact, bounded searches, which instance of a
study is read, and which prior is linked."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from radpilot.pacs.client import PacsClient, PacsError, PacsInstance, PacsQuery, PacsStudy
from radpilot.pacs.pull import PullRequest, _choose_prior


@pytest.mark.parametrize("patient_id", ["SYN*", "A?", "a\\b", "x\ny", "  "])
def test_a_search_matches_exactly(patient_id: str) -> None:
    with pytest.raises(ValidationError):
        PacsQuery(patient_id=patient_id)


def test_a_search_needs_a_patient_or_accession_and_dates_in_order() -> None:
    with pytest.raises(ValidationError):
        PacsQuery()
    with pytest.raises(ValidationError):
        PacsQuery(patient_id="p", date_from=date(2025, 2, 1), date_to=date(2025, 1, 1))
    query = PacsQuery(patient_id=" P1 ", date_to=date(2025, 1, 31))
    assert query.filters() == {"PatientID": "P1", "StudyDate": "-20250131"}


def instance(sop: str, **fields: object) -> PacsInstance:
    return PacsInstance(study_uid="1.2", series_uid="1.2.3", sop_uid=sop, **fields)  # type: ignore[arg-type]


def test_the_frontal_single_frame_radiograph_that_fits_is_read() -> None:
    client = PacsClient("http://pacs.invalid/dicom-web", max_pixels=10_000_000)
    chosen = client._choose([
        instance("1", modality="SR"), instance("2", modality="DX", view="LL"),
        instance("3", modality="DX", view="PA", frames=3),
        instance("4", modality="DX", view="PA", rows=9000, columns=9000),
        instance("5", modality="DX", view="AP", rows=2000, columns=2000),
    ])  # fmt: skip
    assert chosen.sop_uid == "5"
    for instances, code in [([instance("1", modality="MR")], "no_radiograph"),
                            ([instance("1", modality="CR", frames=2)], "multi_frame"),
                            ([instance("1", modality="CR", rows=5000, columns=5000)],
                             "image_too_large")]:  # fmt: skip
        with pytest.raises(PacsError) as refused:
            client._choose(instances)
        assert refused.value.code == code


def test_the_prior_is_the_latest_earlier_study_unless_another_or_none_is_asked() -> None:
    current = PacsStudy(study_uid="1.9", patient_id="P", study_date=date(2025, 3, 1))
    priors = [PacsStudy(study_uid="1.8", study_date=date(2024, 6, 1)),
              PacsStudy(study_uid="1.7", study_date=date(2023, 6, 1))]  # fmt: skip
    assert _choose_prior(PullRequest(study_uid="1.9"), current, priors) == priors[0]
    assert _choose_prior(PullRequest(study_uid="1.9", prior="1.7"), current, priors) == priors[1]
    assert _choose_prior(PullRequest(study_uid="1.9", prior="none"), current, priors) is None
    assert _choose_prior(PullRequest(study_uid="1.9"), current, []) is None
    with pytest.raises(PacsError):
        _choose_prior(PullRequest(study_uid="1.9", prior="1.6"), current, priors)
    with pytest.raises(ValidationError):
        PullRequest(study_uid="1.9; DROP")
