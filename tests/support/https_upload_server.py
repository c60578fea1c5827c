#!/usr/bin/env python3
"""A stand-in HTTPS endpoint for `jitprof upload` tests: answers POST
/api/upload like `jitprof serve` (id = SHA-256 of the body received) over TLS
with the given certificate. Writes the port it listens on to --port-file."""
import argparse
import hashlib
import http.server
import json
import ssl


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        upload_id = hashlib.sha256(body).hexdigest()
        reply = json.dumps({"id": upload_id, "url": "https://%s/p/%s" % (self.headers["Host"], upload_id),
                            "existed": False}).encode()
        self.send_response(201 if self.path == "/api/upload" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


parser = argparse.ArgumentParser()
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--port-file", required=True)
args = parser.parse_args()
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(args.cert, args.key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(args.port_file, "w") as out:
    out.write(str(server.server_address[1]))
server.serve_forever()
