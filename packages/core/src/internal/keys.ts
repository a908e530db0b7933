/**
 * The key layout: `prefix:namespace:version:key`, with the user's key encoded one-to-one onto
 * what every store keeps. Redis stores UTF-8, which turns every lone surrogate into U+FFFD, so
 * `id\uD800` and `id\uDBFF` would share one Redis key: ill-formed code units are escaped, and so is
 * the escape character itself, which keeps the encoding injective and identical on every store.
 *
 * @internal
 */
import * as Crypto from "node:crypto"
import * as Glob from "../Glob.js"

/**
 * How a key appears in logs, span attributes and error messages. Keys can be secrets (session
 * tokens, e-mail addresses): by default only a short hash is shown (`#` + the first 12 hex digits
 * of its SHA-256: enough to correlate lines about one key, not to recover it); with `logKeys: true`
 * the key itself.
 *
 * @internal
 */
export const labeller = (clear: boolean): (key: string) => string =>
  clear ? (key) => key : (key) => "#" + Crypto.hash("sha256", key, "hex").slice(0, 12)

/** DLE ("data link escape"): starts an escape; DLE DLE is a DLE, DLE `u` + 4 hex digits a lone surrogate. */
const ESC = "\u0010"

const needsEscape = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x10 || (c >= 0xd800 && c <= 0xdfff)) return true
  }
  return false
}

/**
 * Encodes a user key (or a glob pattern over user keys) losslessly: well-formed text without DLE
 * is unchanged (the common case, checked without allocating).
 *
 * @internal
 */
export const encode = (text: string): string => {
  if (!needsEscape(text)) return text
  let out = ""
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x10) {
      out += ESC + ESC
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += text[i]! + text[i + 1]!
        i++
      } else {
        out += ESC + "u" + c.toString(16)
      }
    } else if (c >= 0xd800 && c <= 0xdfff) {
      out += ESC + "u" + c.toString(16)
    } else {
      out += text[i]!
    }
  }
  return out
}

const notText = (what: string, value: unknown): TypeError =>
  new TypeError(
    `cache-aside: ${what} must give a string, got ${
      value === null ? "null" : Array.isArray(value) ? "an array" : typeof value
    }`
  )

/**
 * The keys of one cache.
 *
 * @internal
 */
export class Keys {
  /** `prefix:namespace:version:` */
  readonly keyPrefix: string
  /** Every key of the namespace, all versions, as a glob pattern. */
  readonly namespacePattern: string
  /** Cross-process refresh hints: a segment no version can be (it holds a control character). */
  readonly hintPrefix: string
  constructor(prefix: string, namespace: string, version: string) {
    const namespacePrefix = `${prefix}:${namespace}:`
    this.keyPrefix = `${namespacePrefix}${version}:`
    this.namespacePattern = `${Glob.escape(namespacePrefix)}*`
    this.hintPrefix = `${namespacePrefix}${version}\u0000refresh:`
  }
  /**
   * The full key of a user key. A key function that returns no string (a JavaScript caller's
   * object, which would read as `[object Object]` and share one entry with every other object) is
   * a defect of the get, said plainly.
   */
  full(userKey: string): string {
    if (typeof userKey !== "string") throw notText("the key function", userKey)
    return this.keyPrefix + encode(userKey)
  }
  /** The short key beside an entry, leased by whoever reloads it in the background. */
  hint(full: string): string {
    return this.hintPrefix + full.slice(this.keyPrefix.length)
  }
  /** The store pattern of a glob over user keys. */
  pattern(pattern: string): string {
    if (typeof pattern !== "string") throw notText("invalidatePattern's pattern", pattern)
    return Glob.escape(this.keyPrefix) + encode(pattern)
  }
}
