#!/usr/bin/python3
"""Signatures for the /control/* tests, made independently of aleph-edge's code:
python3-ecdsa (secp256k1 and P-256 arithmetic), python3-pycryptodome (keccak-256, as Cryptodome),
python3-nacl (ed25519), python3-base58. Reads one JSON job on stdin, writes JSON."""

import base64
import hashlib
import json
import sys

import base58
import nacl.signing
from Cryptodome.Hash import keccak
from ecdsa import NIST256p, SECP256k1, SigningKey
from ecdsa.ellipticcurve import Point
from ecdsa.numbertheory import inverse_mod
from ecdsa.util import sigencode_string, sigencode_string_canonize


def keccak256(data: bytes) -> bytes:
    k = keccak.new(digest_bits=256)
    k.update(data)
    return k.digest()


def eth_address(key_hex: str) -> str:
    sk = SigningKey.from_string(bytes.fromhex(key_hex), curve=SECP256k1)
    return "0x" + keccak256(sk.get_verifying_key().to_string()).hex()[-40:]


def eth_personal_sign(key_hex: str, message: bytes) -> str:
    """EIP-191 version 0x45 signature, r || s || v (v = 27 + recovery id), low s."""
    sk = SigningKey.from_string(bytes.fromhex(key_hex), curve=SECP256k1)
    digest = keccak256(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
    sig = sk.sign_digest_deterministic(digest, sigencode=sigencode_string_canonize, hashfunc=hashlib.sha256)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    curve, g, n = SECP256k1.curve, SECP256k1.generator, SECP256k1.order
    p = curve.p()
    e = int.from_bytes(digest, "big")
    target = sk.get_verifying_key().pubkey.point
    # The recovery id: which of the two points with x = r gives back our public key.
    y_squared = (pow(r, 3, p) + 7) % p
    y = pow(y_squared, (p + 1) // 4, p)
    for recid in (0, 1):
        ry = y if y % 2 == recid else p - y
        big_r = Point(curve, r, ry, n)
        q = inverse_mod(r, n) * (s * big_r + (-e % n) * g)
        if q.x() == target.x() and q.y() == target.y():
            return "0x" + sig.hex() + format(27 + recid, "02x")
    raise RuntimeError("no recovery id")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def allocation(job):
    body = job["body"].encode()
    payload = json.dumps({
        "method": job["method"], "path": job["path"],
        "body_sha256": hashlib.sha256(body).hexdigest(), "iat": job["iat"],
    }).encode()
    sig = eth_personal_sign(job["key"], payload)
    return {"authorization": f"Aleph-EIP191-V1 sig={sig},payload={payload.hex()}"}


def operator(job):
    wallet = job["wallet"]
    ephemeral = SigningKey.generate(curve=NIST256p)
    xy = ephemeral.get_verifying_key().to_string()
    if wallet["chain"] == "ETH":
        address = eth_address(wallet["key"])
    else:
        signer = nacl.signing.SigningKey(bytes.fromhex(wallet["seed"]))
        address = base58.b58encode(bytes(signer.verify_key)).decode()
    pubkey = {
        "pubkey": {"alg": "ES256", "crv": "P-256", "ext": True, "key_ops": ["verify"], "kty": "EC", "x": b64url(xy[:32]), "y": b64url(xy[32:])},
        "alg": "ECDSA", "domain": job["domain"], "address": job.get("claim", address), "expires": job["expires"], "chain": wallet["chain"],
    }
    pubkey_hex = json.dumps(pubkey).encode().hex()
    if wallet["chain"] == "ETH":
        pubkey_sig = eth_personal_sign(wallet["key"], bytes.fromhex(pubkey_hex))
    else:
        # Solana wallets sign the hex text of the payload.
        pubkey_sig = "0x" + signer.sign(pubkey_hex.encode()).signature.hex()
    operation = json.dumps({"time": job["time"], "method": job["method"], "path": job["path"], "domain": job["domain"]}).encode()
    op_sig = ephemeral.sign(operation, hashfunc=hashlib.sha256, sigencode=sigencode_string)
    signed_pubkey = {"payload": pubkey_hex, "signature": pubkey_sig}
    signed_operation = {"payload": operation.hex(), "signature": op_sig.hex()}
    return {
        "address": address,
        "headers": {"X-SignedPubKey": json.dumps(signed_pubkey), "X-SignedOperation": json.dumps(signed_operation)},
        "auth": {"X-SignedPubKey": signed_pubkey, "X-SignedOperation": signed_operation},
    }


def address(job):
    if "key" in job:
        return {"address": eth_address(job["key"])}
    return {"address": base58.b58encode(bytes(nacl.signing.SigningKey(bytes.fromhex(job["seed"])).verify_key)).decode()}


JOBS = {"allocation": allocation, "operator": operator, "address": address}

if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump(JOBS[request["job"]](request), sys.stdout)
