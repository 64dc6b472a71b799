"""A moto server that, like DynamoDB, applies each write atomically.

moto_server handles requests on parallel threads and evaluates a conditional write in Python without
a lock, so two racing conditional writes can both pass their condition (seen here: two winners among
32 concurrent claims, about 1 run in 60). Real DynamoDB serialises writes to an item. This launcher
runs the same moto application behind one lock, so race tests measure our conditions, not moto's
missing atomicity. Connections are still accepted in parallel; only request handling is serialised.

Usage: python scripts/moto_dynamodb.py --port-file FILE   (binds 127.0.0.1 on a free port, writes it)
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


class OneRequestAtATime:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Drain the body inside the lock: a lazily produced response would escape it.
            return list(self.app(environ, start_response))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()

    app = OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    # A load test opens hundreds of connections at once; the default backlog (128) drops SYNs while
    # the single request lock is busy, and clients then time out connecting.
    server.socket.listen(1024)
    with open(args.port_file, "w", encoding="ascii") as port_file:
        port_file.write(str(server.port))
    server.serve_forever()


if __name__ == "__main__":
    main()
