"""Every error is an RFC 9457 problem document with a stable type; a crash shows no internals."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from membership.errors import Conflict


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    count: int


@pytest.fixture
def probe_app(app: FastAPI) -> FastAPI:
    @app.post("/_probe/things")
    async def create_thing(thing: Thing) -> Thing:
        return thing

    @app.get("/_probe/crash")
    async def crash() -> None:
        raise RuntimeError("secret connection string postgres://user:pw@db")

    @app.get("/_probe/conflict")
    async def conflict() -> None:
        raise Conflict("Already there.", existing_id="abc")

    return app


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    return body


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/no/such/thing"), 404, "not-found")


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/healthz"), 405, "method-not-allowed")


async def test_validation_errors_list_the_failing_fields(
    probe_app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/_probe/things", json={"name": "", "count": "many", "colour": "red"}
    )
    body = assert_problem(response, 422, "validation-error")
    locations = {tuple(error["loc"]) for error in body["errors"]}  # type: ignore[attr-defined]
    assert locations == {("body", "name"), ("body", "count"), ("body", "colour")}


async def test_malformed_json_is_a_problem(probe_app: FastAPI, client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/_probe/things", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "validation-error")


async def test_domain_error_keeps_its_slug_and_extensions(
    probe_app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = assert_problem(await client.get("/_probe/conflict"), 409, "conflict")
    assert body["existing_id"] == "abc"
    assert body["instance"] == "/_probe/conflict"


async def test_crash_is_logged_but_never_shown(
    probe_app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await client.get("/_probe/crash")
    body = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert body["detail"]
    assert any("secret connection string" in str(record.exc_info) for record in caplog.records)


async def test_an_extension_cannot_replace_a_standard_member(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    @app.get("/_probe/clash")
    async def clash() -> None:
        raise Conflict("Clash.", status="blocked", type="mine")

    body = assert_problem(await client.get("/_probe/clash"), 409, "conflict")
    assert body["detail"] == "Clash."
