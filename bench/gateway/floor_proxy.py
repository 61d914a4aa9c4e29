"""The floor: a pass-through proxy on Charter's own stack (uvicorn, Starlette, aiohttp), no charter.

It authenticates nobody, checks nothing and records nothing: it parses the JSON body, renames the
model, calls the upstream over one keep-alive pool and returns its JSON. Whatever it adds over the
upstream alone is what any gateway on this stack pays before doing any work of its own; what
Charter adds over it is the cost of its controls. Stream requests are passed through as bytes.

    python bench/gateway/floor_proxy.py --upstream http://127.0.0.1:PORT/v1 --port PORT
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def build(upstream: str, model: str) -> Starlette:
    pool: list[aiohttp.ClientSession] = []
    headers = {"content-type": "application/json"}

    def session() -> aiohttp.ClientSession:
        if not pool:
            pool.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
        return pool[0]

    url = upstream + "/chat/completions"

    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        body["model"] = model
        data = json.dumps(body, separators=(",", ":")).encode()
        if body.get("stream"):
            answer = await session().post(url, data=data, headers=headers)

            async def relay() -> AsyncIterator[bytes]:
                async with answer:
                    async for chunk in answer.content.iter_any():
                        yield chunk

            return StreamingResponse(relay(), media_type="text/event-stream")
        async with session().post(url, data=data, headers=headers) as r:
            answer_json = json.loads(await r.read())
        return JSONResponse(answer_json)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the upstream base URL, with /v1")
    parser.add_argument("--model", default="mock-model", help="the upstream's model name")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = build(args.upstream.rstrip("/"), args.model)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
