/**
 * Turns cache entries into bytes and back. The value's `Schema` encodes and decodes it, so a
 * `Date`, a `Uint8Array`, a `bigint` or a class instance comes back as what it was; the envelope is
 * JSON, gzip-compressed above a size threshold. Bytes that fail to decode are a `CodecError`, which
 * the read path treats as a miss.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as zlib from "node:zlib"

/**
 * A cached entry: a value, or a cached "not found".
 *
 * `expiresAt` is the logical expiry (epoch milliseconds) and `delta` how long the lookup that
 * produced the entry took (milliseconds); both are kept for refresh-ahead decisions.
 *
 * @since 0.1.0
 */
export type Entry<A> =
  | { readonly _tag: "Value"; readonly value: A; readonly expiresAt: number; readonly delta: number }
  | { readonly _tag: "NotFound"; readonly expiresAt: number; readonly delta: number }

/**
 * What a key can hold: an entry, or a lease (a placeholder that a loader put there, see `lease`).
 *
 * @since 0.1.0
 */
export type Stored<A> = Entry<A> | { readonly _tag: "Lease" } | {
  /**
   * An entry written in a newer format than this version of the library reads (a rolling deploy):
   * a miss that is left alone, neither evicted as corrupt nor overwritten.
   */
  readonly _tag: "Newer"
}

const LEASE = "\u0000lease:"

/**
 * The bytes of a lease: a placeholder stored under a key while one process loads its value. They
 * start with a NUL byte, which neither JSON nor gzip does, so a lease is never mistaken for an entry.
 *
 * @since 0.1.0
 */
export const lease = (token: string): Uint8Array => Buffer.from(LEASE + token, "utf8")

/**
 * Whether stored bytes are a lease.
 *
 * @since 0.1.0
 */
export const isLease = (bytes: Uint8Array): boolean => bytes.length > 0 && bytes[0] === 0

/**
 * Bytes could not be decoded into an entry (garbage, an older shape, a broken gzip stream), or a
 * value could not be encoded by its schema.
 *
 * @since 0.1.0
 */
export class CodecError extends Schema.TaggedError<CodecError>("@cache-aside/core/CodecError")("CodecError", {
  reason: Schema.Literal("Encode", "Decode"),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/**
 * @since 0.1.0
 */
export interface Codec<A> {
  readonly encode: (entry: Entry<A>) => Either.Either<Uint8Array, CodecError>
  readonly decode: (bytes: Uint8Array) => Either.Either<Stored<A>, CodecError>
}

/**
 * @since 0.1.0
 */
export interface Options {
  /** Entries whose JSON is larger than this many bytes are gzip-compressed. Default 1024; `false` never compresses. */
  readonly compressAbove?: number | false | undefined
}

const GZIP_0 = 0x1f
const GZIP_1 = 0x8b

const toBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const decodeError = (message: string, cause?: unknown) =>
  Either.left(new CodecError({ reason: "Decode", message, cause }))

/**
 * Makes a codec for a schema whose encoded side is JSON-compatible.
 *
 * @example
 * ```ts
 * import { Either, Schema } from "effect"
 * import { Codec } from "@cache-aside/core"
 *
 * const codec = Codec.make(Schema.Struct({ at: Schema.Date }))
 * const bytes = Either.getOrThrow(codec.encode({ _tag: "Value", value: { at: new Date(0) }, expiresAt: 0, delta: 0 }))
 * const entry = Either.getOrThrow(codec.decode(bytes)) // entry.value.at is a Date again
 * ```
 *
 * @since 0.1.0
 */
export const make = <A, I>(schema: Schema.Schema<A, I, never>, options: Options = {}): Codec<A> => {
  const compressAbove = options.compressAbove === undefined ? 1024 : options.compressAbove
  const encodeValue = Schema.encodeEither(schema)
  const decodeValue = Schema.decodeUnknownEither(schema)

  const encode = (entry: Entry<A>): Either.Either<Uint8Array, CodecError> => {
    let json: string
    if (entry._tag === "NotFound") {
      json = JSON.stringify({ n: 1, x: entry.expiresAt, d: entry.delta })
    } else {
      const encoded = encodeValue(entry.value)
      if (Either.isLeft(encoded)) {
        return Either.left(
          new CodecError({
            reason: "Encode",
            message: ParseResult.TreeFormatter.formatErrorSync(encoded.left),
            cause: encoded.left
          })
        )
      }
      try {
        json = JSON.stringify({ v: encoded.right, x: entry.expiresAt, d: entry.delta })
      } catch (cause) {
        return Either.left(new CodecError({ reason: "Encode", message: "value is not JSON-serializable", cause }))
      }
    }
    const bytes = Buffer.from(json, "utf8")
    if (compressAbove !== false && bytes.length > compressAbove) {
      return Either.right(zlib.gzipSync(bytes))
    }
    return Either.right(bytes)
  }

  const decode = (bytes: Uint8Array): Either.Either<Stored<A>, CodecError> => {
    let buffer = toBuffer(bytes)
    if (buffer.length > 0 && buffer[0] === 0) {
      return buffer.toString("utf8", 0, LEASE.length) === LEASE
        ? Either.right({ _tag: "Lease" })
        : decodeError("unknown binary header")
    }
    if (buffer.length >= 2 && buffer[0] === GZIP_0 && buffer[1] === GZIP_1) {
      try {
        buffer = zlib.gunzipSync(buffer)
      } catch (cause) {
        return decodeError("corrupt gzip stream", cause)
      }
    }
    let raw: unknown
    try {
      raw = JSON.parse(buffer.toString("utf8"))
    } catch (cause) {
      return decodeError("not JSON", cause)
    }
    if (typeof raw !== "object" || raw === null) return decodeError("not an entry envelope")
    const envelope = raw as { readonly v?: unknown; readonly n?: unknown; readonly x?: unknown; readonly d?: unknown }
    const expiresAt = typeof envelope.x === "number" ? envelope.x : Number.POSITIVE_INFINITY
    const delta = typeof envelope.d === "number" ? envelope.d : 0
    if (envelope.n === 1) return Either.right({ _tag: "NotFound", expiresAt, delta })
    if (!("v" in envelope)) return decodeError("not an entry envelope")
    const value = decodeValue(envelope.v)
    if (Either.isLeft(value)) {
      return decodeError(ParseResult.TreeFormatter.formatErrorSync(value.left), value.left)
    }
    return Either.right({ _tag: "Value", value: value.right, expiresAt, delta })
  }

  return { encode, decode }
}
