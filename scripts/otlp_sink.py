#!/usr/bin/env python3
"""A minimal OTLP/HTTP sink for `make bench`: accepts POST /v1/traces on
127.0.0.1:PORT, discards the body and answers 200, so a benchmark can compare
intake with tracing exported to a reachable collector against an unreachable
one. Usage: otlp_sink.py PORT"""
import http.server
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
