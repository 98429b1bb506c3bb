// Wallet signatures, checked with audited libraries (noble): Ethereum personal_sign
// (EIP-191 version 0x45, secp256k1 recovery, keccak-256 address) and Solana ed25519.

import { ed25519 } from '@noble/curves/ed25519.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { base58 } from '@scure/base';

/** The 0x-prefixed lowercase address whose key made this personal_sign signature of `message`, or undefined. */
export function recoverEthereumSigner(message: Uint8Array, signature: Uint8Array): string | undefined {
  if (signature.length !== 65) return undefined;
  const v = signature[64]!;
  const recovery = v >= 27 ? v - 27 : v;
  if (recovery !== 0 && recovery !== 1) return undefined;
  const prefix = new TextEncoder().encode(`\x19Ethereum Signed Message:\n${message.length}`);
  const digest = keccak_256(concat(prefix, message));
  // noble's "recovered" layout: recovery byte, then r and s.
  const recovered = concat(Uint8Array.of(recovery), signature.subarray(0, 64));
  try {
    const publicKey = secp256k1.recoverPublicKey(recovered, digest, { prehash: false });
    const uncompressed = secp256k1.Point.fromBytes(publicKey).toBytes(false);
    return `0x${Buffer.from(keccak_256(uncompressed.subarray(1)).subarray(12)).toString('hex')}`;
  } catch {
    return undefined;
  }
}

/** True when `signature` is the ed25519 signature of `message` by the Solana address (base58 public key). */
export function verifySolana(address: string, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    const publicKey = base58.decode(address);
    if (publicKey.length !== 32 || signature.length !== 64) return false;
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/** Bytes of a hex string with or without 0x; undefined when it is not hex. */
export function fromHex(text: string): Uint8Array | undefined {
  const hex = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return undefined;
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
