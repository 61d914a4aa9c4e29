"""Charter's mock upstream, served with TCP_NODELAY on its connections.

``python -m charter.providers.mock_server`` binds a socket made with
``socket.socket(AF_INET, SOCK_STREAM)``, whose protocol number is 0; asyncio only turns Nagle's
algorithm off on sockets whose protocol is ``IPPROTO_TCP``, so every keep-alive response (headers
and body are two writes) waits for the client's delayed ACK: about 40 ms a request. This runs the
same application (``create_app``) with the protocol set, until the fix lands in the package::

    python bench/gateway/mock_upstream.py --port 8099
"""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn

from charter.providers.mock_server import create_app


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    # IPPROTO_TCP is the whole point: accepted sockets inherit it, and asyncio then sets NODELAY.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(create_app(), lifespan="off", log_level="warning", access_log=False)
    print(f"mock upstream listening on http://{host}:{port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
