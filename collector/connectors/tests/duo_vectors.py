#!/usr/bin/env python3
"""Test vectors for Cordon's Duo request signatures, computed by Duo's own Python client.

Prints a JSON list; each case has the inputs (method, host, path, date, signature version,
parameters as [key, value] pairs, body, X-Duo headers, hash) and what duo_client's
canonicalize() and sign() make of them: the canonical request, the Authorization header
and the hex signature inside it. For a v5 POST the body is duo_client's canon_json() of
the parameters (which are then not signed as parameters), as its api_call() does.

Run by collector/connectors/tests/duo_signing.rs. Needs `duo_client` (make setup).
"""
import base64
import hashlib
import json
import sys

try:
    import duo_client.client as dc
except ImportError as e:
    sys.stderr.write(
        "duo_client (Duo's Python client, from PyPI) is not importable (%s): "
        "run `make setup` (it runs `python3 -m pip install duo_client`)\n" % e)
    sys.exit(3)

IKEY = "DIWJ8X6AEYOR5OMC6TQ1"
SKEY = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep"
DATE = "Tue, 21 Aug 2012 17:29:18 -0000"
HOST = "api-xxxxxxxx.duosecurity.com"

PUSHINFO = "host=web-1&process=curl%20-s%20http%3A%2F%2F10.0.0.2%2F&rule=no%20egress"

# (name, method, host, path, version, params as pairs, x-duo headers, hmac-sha1?)
CASES = [
    ("check, no params, v2", "GET", HOST, "/auth/v2/check", 2, [], [], True),
    ("preauth, v2", "POST", HOST, "/auth/v2/preauth", 2, [("username", "alice")], [], True),
    ("push, v2", "POST", HOST, "/auth/v2/auth", 2,
     [("username", "alice"), ("factor", "push"), ("device", "auto"), ("async", "1"),
      ("pushinfo", PUSHINFO), ("type", "Cordon approval")], [], True),
    ("unicode and spaces, v2", "POST", HOST, "/auth/v2/preauth", 2,
     [("username", "José Müller 😀"), ("realname", "日本 語")], [], True),
    ("reserved characters and tilde, v2", "GET", HOST, "/auth/v2/auth_status", 2,
     [("txid", "a b~c!*'()@/+=&?#%_.-"), ("key with space", "")], [], True),
    ("repeated keys sorted, v2", "GET", HOST, "/admin/v1/users", 2,
     [("b", "x"), ("a", "2"), ("a", "10"), ("a", "1")], [], True),
    ("upper-case host, lower-case method, v2", "get", "API-XXXXXXXX.DuoSecurity.com",
     "/auth/v2/check", 2, [("z", "1")], [], True),
    ("v2 signed with HMAC-SHA512 (duo_client's default)", "POST", HOST, "/auth/v2/preauth", 2,
     [("username", "alice")], [], False),
    ("check, no params, v5", "GET", HOST, "/auth/v2/check", 5, [], [], False),
    ("auth_status, v5 GET", "GET", HOST, "/auth/v2/auth_status", 5,
     [("txid", "45f7c92b-f45f-4862-8545-e0f58e78075a")], [], False),
    ("unicode query, v5 GET", "GET", HOST, "/auth/v2/auth_status", 5,
     [("txid", "é ~ 😀"), ("a", "b")], [], False),
    ("preauth, v5 POST (JSON body)", "POST", HOST, "/auth/v2/preauth", 5,
     [("username", "alice")], [], False),
    ("push, v5 POST", "POST", HOST, "/auth/v2/auth", 5,
     [("username", "alice"), ("factor", "push"), ("device", "DPFZRS9FB0D46QFTM899"),
      ("async", "1"), ("pushinfo", PUSHINFO), ("type", "Cordon approval")], [], False),
    ("JSON escapes, v5 POST", "POST", HOST, "/auth/v2/preauth", 5,
     [("username", "quote\" backslash\\ nl\n tab\t del\x7f é 😀 日本"), ("empty", "")], [], False),
    ("empty body, v5 POST", "POST", HOST, "/auth/v2/preauth", 5, [], [], False),
    ("X-Duo headers, v5", "POST", HOST, "/auth/v2/preauth", 5, [("username", "bob")],
     [("X-Duo-Zeta", "last"), ("x-duo-alpha", "first value")], False),
]


def group(pairs):
    params = {}
    for k, v in pairs:
        params.setdefault(k, []).append(v)
    return params


def case(name, method, host, path, version, pairs, headers, sha1):
    digestmod = hashlib.sha1 if sha1 else hashlib.sha512
    is_post = method.upper() in ("POST", "PUT", "PATCH")
    if version == 5 and is_post:
        body = dc.Client.canon_json(dict(pairs))
        params = {}
        signed_pairs = []
    else:
        body = "" if version == 5 else None
        params = dc.normalize_params(group(pairs))
        signed_pairs = pairs
    extra = dict(headers)
    canonical = dc.canonicalize(method, host, path, params, DATE, version,
                                body=body, additional_headers=extra)
    auth = dc.sign(IKEY, SKEY, method, host, path, DATE, version, params,
                   body=body, digestmod=digestmod, additional_headers=extra)
    decoded = base64.b64decode(auth[len("Basic "):]).decode("utf-8")
    return {
        "name": name,
        "ikey": IKEY,
        "skey": SKEY,
        "method": method,
        "host": host,
        "path": path,
        "date": DATE,
        "version": version,
        "hmac_sha1": sha1,
        "pairs": [list(p) for p in pairs],
        "signed_pairs": [list(p) for p in signed_pairs],
        "body": body if body is not None else "",
        "x_duo_headers": [list(h) for h in headers],
        "canonical": canonical,
        "authorization": auth,
        "signature": decoded.split(":", 1)[1],
        "duo_client_version": dc.__version__,
    }


if __name__ == "__main__":
    json.dump([case(*c) for c in CASES], sys.stdout, ensure_ascii=True, indent=1)
    sys.stdout.write("\n")
