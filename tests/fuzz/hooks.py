"""Hooks of the schema fuzz run (tests/e2e/fuzz.rs), loaded through SCHEMATHESIS_HOOKS.

An Idempotency-Key is state, not data: the same key sent again with another body
is answered 422 idempotency-mismatch, by design (the IETF Idempotency-Key draft).
The fuzzer draws keys from a small space ("0", "00", ...) and would reuse them
across unrelated bodies, so every valid key it generates gets a unique suffix.
Keys that are invalid on purpose (negative cases) are sent as generated.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"[!-~](?:[ -~]*[!-~])?")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        key = headers[name]
        if isinstance(key, str) and len(key) <= 255 and VALID_KEY.fullmatch(key):
            headers[name] = f"{key[:200]}-{uuid.uuid4().hex}"
