"""The remote registry path: the same tools and validation, calls run by a tool service."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from radpilot.assembly import build_registry
from radpilot.core.errors import ToolArgumentError
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from radpilot.tools.remote import RemoteToolRegistry, create_tool_service
from tests.factories import chest_like, png_bytes


@pytest.fixture
def shared(tmp_path: Path) -> tuple[ToolContext, RemoteToolRegistry]:
    """API side and tool-service side on one state dir, the service served in-process."""
    settings = Settings(state_dir=tmp_path)
    ctx = ToolContext.create(settings)
    service = create_tool_service(build_registry(settings), ToolContext.create(settings))
    remote = build_registry(settings.model_copy(update={"tools_url": "http://tools"}))
    assert isinstance(remote, RemoteToolRegistry)
    remote._http = TestClient(service, base_url="http://tools/")  # noqa: SLF001 (test wiring)
    return ctx, remote


def test_a_remote_call_returns_what_a_local_call_returns(shared) -> None:  # type: ignore[no-untyped-def]
    ctx, remote = shared
    study = ctx.studies.ingest(png_bytes(chest_like()), "chest.png")
    there = remote.run("image_info", {"study_id": study.id}, ctx)
    here = build_registry(Settings()).run("image_info", {"study_id": study.id}, ctx)
    assert there.ok and there.output == here.output and there.inputs == here.inputs
    assert remote.names() == build_registry(Settings()).names()  # the planner sees the same tools


def test_validation_stays_local_and_tool_failures_come_back_clean(shared) -> None:  # type: ignore[no-untyped-def]
    ctx, remote = shared
    with pytest.raises(ToolArgumentError, match="study_id"):
        remote.run("classify_findings", {}, ctx)
    failed = remote.run("image_info", {"study_id": "st_unknown"}, ctx)
    assert not failed.ok and failed.error is not None and failed.error.code != "internal_error"


def test_a_down_tool_service_is_a_clean_failure(tmp_path: Path) -> None:
    from tests.server import free_port

    settings = Settings(state_dir=tmp_path, tools_url=f"http://127.0.0.1:{free_port()}/tools")
    ctx = ToolContext.create(settings)
    study = ctx.studies.ingest(png_bytes(chest_like()), "chest.png")
    result = build_registry(settings).run("image_info", {"study_id": study.id}, ctx)
    assert not result.ok and result.error is not None
    assert result.error.code == "tool_service_unavailable"


def test_the_service_serves_the_tools_that_read_pixels_and_only_those(shared) -> None:  # type: ignore[no-untyped-def]
    """Each tool says whether it runs there (`on_tool_service`): the imaging tools do, the
    knowledge tools stay in the API process, and the service refuses them."""
    _, remote = shared
    served = set(remote._http.get("tools").json())  # noqa: SLF001 (test wiring)
    assert served == {"image_info", "classify_findings", "localize_finding", "segment_anatomy",
                      "segment_region", "measure", "compare_studies"}  # fmt: skip
    refused = remote._http.post("run/search_guidelines", json={"query": "effusion"})  # noqa: SLF001
    assert refused.status_code == 404
