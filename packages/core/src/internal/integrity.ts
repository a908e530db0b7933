/**
 * Entry integrity: with a signing key, every entry a cache writes carries an HMAC-SHA256 over its
 * exact stored bytes (after compression) bound to its full cache key, and a cache reads only
 * entries whose MAC verifies. Write access to the store alone then cannot plant a well-formed value,
 * nor copy an entry from one key (or cache) to another.
 *
 * Stored bytes: `MAGIC (2 bytes) || mac (32 bytes) || payload`, where the payload is what the codec
 * wrote and `mac = HMAC(key, u32be(byteLength(fullKey)) || fullKey || payload)`: the length prefix
 * keeps (key, payload) pairs unambiguous whatever bytes a key holds.
 *
 * Leases (bytes starting with NUL) stay unsigned placeholders: they carry no value, so a forged
 * lease costs at most a lock wait and a load, never a wrong answer.
 *
 * Kept apart from the codec: the codec turns values into bytes and knows no keys; binding bytes to
 * the key they are stored under is the read path's knowledge.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"
import * as Codec from "../Codec.js"

/** A signing key: text (UTF-8) or bytes, kept `Redacted` so it never prints. */
export type SigningKey = Redacted.Redacted<string | Uint8Array>

/** `0x01` (neither JSON, gzip nor a lease starts with it), then the signing format version. */
const MAGIC_0 = 0x01
const MAGIC_1 = 0x01
const MAC_BYTES = 32
const HEADER_BYTES = 2 + MAC_BYTES

/** The shortest signing key accepted, in bytes (HMAC-SHA256 wants 32 random bytes; 16 is a floor). */
export const minKeyBytes = 16

/**
 * Signs and verifies the stored bytes of one cache.
 *
 * @internal
 */
export interface Integrity {
  /** The bytes to store for a payload the codec wrote under `full`. */
  readonly sign: (full: string, payload: Uint8Array) => Uint8Array
  /** The codec's payload of stored bytes read under `full`; leases pass through unchanged. */
  readonly verify: (full: string, stored: Uint8Array) => Either.Either<Uint8Array, Codec.CodecError>
}

const keyBytes = (key: SigningKey): Buffer | undefined => {
  const value: unknown = Redacted.value(key)
  return typeof value === "string" ? Buffer.from(value, "utf8") : value instanceof Uint8Array
    ? Buffer.from(value)
    : undefined
}

/**
 * Checks signing keys; the message never holds a key.
 *
 * @internal
 */
export const validateKeys = (what: string, keys: ReadonlyArray<unknown>): Either.Either<Array<Buffer>, string> => {
  const out: Array<Buffer> = []
  for (const key of keys) {
    const bytes = Redacted.isRedacted(key) ? keyBytes(key as SigningKey) : undefined
    if (bytes === undefined) return Either.left(`${what} must be a Redacted string or Uint8Array`)
    if (bytes.length < minKeyBytes) return Either.left(`${what} must be at least ${minKeyBytes} bytes long`)
    out.push(bytes)
  }
  return Either.right(out)
}

const integrityError = (message: string) => Either.left(new Codec.CodecError({ reason: "Integrity", message }))

/**
 * Makes the integrity of one cache: `current` signs; `current` and `previous` verify (rotation).
 *
 * @internal
 */
export const make = (current: Buffer, previous: ReadonlyArray<Buffer> = []): Integrity => {
  const keys = [current, ...previous].map((bytes) => crypto.createSecretKey(bytes))
  const mac = (key: crypto.KeyObject, full: string, payload: Uint8Array): Buffer => {
    const name = Buffer.from(full, "utf8")
    const length = Buffer.allocUnsafe(4)
    length.writeUInt32BE(name.length, 0)
    return crypto.createHmac("sha256", key).update(length).update(name).update(payload).digest()
  }

  const sign = (full: string, payload: Uint8Array): Uint8Array => {
    const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length)
    out[0] = MAGIC_0
    out[1] = MAGIC_1
    mac(keys[0]!, full, payload).copy(out, 2)
    out.set(payload, HEADER_BYTES)
    return out
  }

  const verify = (full: string, stored: Uint8Array): Either.Either<Uint8Array, Codec.CodecError> => {
    if (stored.length > 0 && stored[0] === 0) return Either.right(stored) // a lease: no value, unsigned
    if (stored.length < HEADER_BYTES || stored[0] !== MAGIC_0 || stored[1] !== MAGIC_1) {
      return integrityError("the entry is not signed")
    }
    const buffer = Buffer.isBuffer(stored) ? stored : Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength)
    const found = buffer.subarray(2, HEADER_BYTES)
    const payload = buffer.subarray(HEADER_BYTES)
    for (const key of keys) {
      if (crypto.timingSafeEqual(mac(key, full, payload), found)) return Either.right(payload)
    }
    return integrityError("the entry's signature does not verify")
  }

  return { sign, verify }
}
