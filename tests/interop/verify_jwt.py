"""Verify a Gatehouse access token with PyJWT, knowing only the JWKS URL.

Usage: verify_jwt.py JWKS_URL ISSUER AUDIENCE ALG TOKEN

Prints the verified claims as JSON and exits 0, or prints why and exits 1.
This is what a consumer in another language does: fetch the JWKS, pick the
key the token's `kid` names, and accept exactly one algorithm.
"""

import json
import sys

try:
    import jwt
except ImportError:
    sys.stderr.write(
        "PyJWT is not installed: pip install -r tests/interop/requirements.txt\n"
    )
    sys.exit(2)


def main() -> int:
    jwks_url, issuer, audience, alg, token = sys.argv[1:6]
    client = jwt.PyJWKClient(jwks_url, cache_keys=False)
    signing_key = client.get_signing_key_from_jwt(token)
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        print(f"unexpected typ {header.get('typ')!r}", file=sys.stderr)
        return 1
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=[alg],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "nbf", "iss", "aud", "sub"]},
    )
    print(json.dumps({"alg": header["alg"], "claims": claims}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except jwt.PyJWTError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
