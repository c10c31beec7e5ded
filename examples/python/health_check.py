#!/usr/bin/env python3
"""Calls grpc.health.v1.Health/Check on a relay or a node over TLS, with
stock grpcio: a client in another language, trusting only the relay's
certificate authority.

    python3 -m pip install grpcio grpcio-health-checking
    python3 examples/python/health_check.py ADDRESS CA_PEM [SERVER_NAME] [SERVICE]

ADDRESS is host:port; CA_PEM the relay's DATA_DIR/ca.pem; SERVER_NAME the
name the certificate must carry (a node's is NODE_ID.node.invalid; the
relay's, e.g. localhost; by default the host of ADDRESS); SERVICE the
service to ask about ("" for the whole server). Prints the status (SERVING,
NOT_SERVING...) and exits 0 if it is SERVING, 1 otherwise, 2 on an error.
"""

import sys

try:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError as e:
    print(
        f"{e}: install grpcio with "
        "`python3 -m pip install grpcio grpcio-health-checking`",
        file=sys.stderr,
    )
    sys.exit(2)


def main(argv):
    if len(argv) < 3 or len(argv) > 5:
        print(__doc__, file=sys.stderr)
        return 2
    address, ca_path = argv[1], argv[2]
    server_name = argv[3] if len(argv) > 3 and argv[3] else None
    service = argv[4] if len(argv) > 4 else ""
    with open(ca_path, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    options = []
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    with grpc.secure_channel(address, credentials, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=10
            )
        except grpc.RpcError as e:
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 2
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
