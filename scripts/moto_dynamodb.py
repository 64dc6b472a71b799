"""A moto server that, like DynamoDB, applies each write atomically.

moto_server handles requests on parallel threads and evaluates a conditional write in Python without
a lock, so two racing conditional writes can both pass their condition (seen here: two winners among
32 concurrent claims, about 1 run in 60). Real DynamoDB serialises writes to an item. This launcher
runs the same moto application behind one lock, so race tests measure our conditions, not moto's
missing atomicity. Connections are still accepted in parallel; only request handling is serialised.

It also keeps SQS FIFO's order when messages come round again: moto frees an in-flight message whose
visibility timeout ran out only when its turn in the scan comes, so the group still counts as in
flight for the earlier ones, and the group's last message is handed out first (seen here: 5 before 4
after a killed consumer's batch came back). SQS hands the group out from its oldest message. The patch
frees every timed-out in-flight message before the scan.

Usage: python scripts/moto_dynamodb.py --port-file FILE   (binds 127.0.0.1 on a free port, writes it)
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sqs.models import SQSBackend
from werkzeug.serving import make_server


def fifo_order_on_redelivery():
    receive = SQSBackend.receive_message

    def receive_in_order(self, queue_name, *args, **kwargs):
        queue = self.get_queue(queue_name)
        for message in list(queue.pending_messages):
            if message.visible:
                queue.pending_messages.remove(message)
        return receive(self, queue_name, *args, **kwargs)

    SQSBackend.receive_message = receive_in_order


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

    fifo_order_on_redelivery()
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
