"""The published OpenAPI document and the interactive docs."""

from __future__ import annotations

from typing import Any

import httpx


async def _openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    resolved: dict[str, Any] = node
    return resolved


async def test_every_endpoint_is_listed(client: httpx.AsyncClient) -> None:
    paths = (await _openapi(client))["paths"]
    assert {"/send", "/logs/email", "/emails/{email_id}", "/health", "/ready"} <= set(paths)
    assert set(paths["/send"]) == {"post"}
    assert set(paths["/logs/email"]) == {"get"}
    assert set(paths["/emails/{email_id}"]) == {"get"}
    assert set(paths["/health"]) == {"get"}
    assert set(paths["/ready"]) == {"get"}


async def test_the_dev_inbox_is_not_published_without_an_inbox(
    client: httpx.AsyncClient,
) -> None:
    paths = (await _openapi(client))["paths"]
    assert not any(path.startswith("/dev") or "inbox" in path for path in paths)


async def test_the_send_body_has_an_example(client: httpx.AsyncClient) -> None:
    document = await _openapi(client)
    operation = document["paths"]["/send"]["post"]
    content = operation["requestBody"]["content"]["application/json"]
    schema = _resolve(document, content["schema"])
    examples = schema.get("examples") or [content.get("example")]
    assert examples and examples[0] is not None
    example = examples[0]
    assert example["to"] == "Jane Doe <jane@example.com>"
    assert {"to", "subject"} <= set(example)
    assert "text" in example or "html" in example
    assert set(example) <= set(schema["properties"])
    assert {"to", "subject"} <= set(schema["required"])
    assert schema.get("additionalProperties") is False


async def test_the_send_example_is_itself_accepted(client: httpx.AsyncClient) -> None:
    document = await _openapi(client)
    content = document["paths"]["/send"]["post"]["requestBody"]["content"]["application/json"]
    example = _resolve(document, content["schema"])["examples"][0]
    response = await client.post("/send", json=example)
    assert response.status_code == 202, response.text


async def test_the_send_schema_uses_camel_case(client: httpx.AsyncClient) -> None:
    document = await _openapi(client)
    content = document["paths"]["/send"]["post"]["requestBody"]["content"]["application/json"]
    properties = set(_resolve(document, content["schema"])["properties"])
    assert {
        "to",
        "cc",
        "bcc",
        "from",
        "replyTo",
        "subject",
        "text",
        "html",
        "headers",
        "attachments",
        "sendAt",
        "ignoreSuppressions",
    } == properties


async def test_documented_responses(client: httpx.AsyncClient) -> None:
    paths = (await _openapi(client))["paths"]
    assert {"202", "400", "422", "503"} <= set(paths["/send"]["post"]["responses"])
    assert {"200", "422"} <= set(paths["/logs/email"]["get"]["responses"])
    assert {"200", "404"} <= set(paths["/emails/{email_id}"]["get"]["responses"])
    assert {"200", "503"} <= set(paths["/ready"]["get"]["responses"])


async def test_the_log_query_parameters_are_documented(client: httpx.AsyncClient) -> None:
    operation = (await _openapi(client))["paths"]["/logs/email"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert names == {
        "page",
        "limit",
        "status",
        "to",
        "since",
        "until",
        "tz",
        "cursor",
        "project",
        "provider",
    }
    assert all(parameter["in"] == "query" for parameter in operation["parameters"])


async def test_docs_are_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


async def test_every_request_input_has_an_example(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if not (parameter.get("example") or parameter["schema"].get("examples")):
                    missing.append(f"{method.upper()} {path} {parameter['name']}")
            body = operation.get("requestBody")
            if body is not None:
                ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                if not schemas[ref].get("examples"):
                    missing.append(f"{method.upper()} {path} body")
    assert missing == []
