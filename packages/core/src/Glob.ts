/**
 * Redis glob patterns: escaping user-supplied text and matching in memory with the same rules as
 * Redis' `stringmatchlen` (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`).
 *
 * The matcher is iterative (the two-pointer wildcard algorithm: on a mismatch it only ever
 * backtracks to the last `*`), so it runs in O(pattern × key) steps for any pattern; a backtracking
 * regular expression takes exponential time on patterns such as `*a*a*a*a*a*a*a*a*b`.
 *
 * Differences from Redis, which compares bytes: a key is compared by UTF-16 code units, so `?` and
 * classes match one code unit where Redis matches one byte of the UTF-8 encoding (the two agree on
 * ASCII). Redis gives up on patterns nested more than 1,000 stars deep; this matcher does not.
 *
 * @since 0.1.0
 */

const special = /[*?[\]\\]/g

/**
 * Escapes every glob metacharacter so that the text matches only itself.
 *
 * @example
 * ```ts
 * import { Glob } from "@cache-aside/core"
 * Glob.escape("1*") // "1\\*"
 * ```
 *
 * @since 0.1.0
 */
export const escape = (text: string): string => text.replace(special, "\\$&")

/** One element of a character class: a single code unit, or an inclusive range of them. */
type ClassItem = { readonly lo: number; readonly hi: number }

/** A pattern compiled into tokens; every token but `Star` matches exactly one code unit. */
type Token =
  | { readonly _tag: "Star" }
  | { readonly _tag: "Any" }
  | { readonly _tag: "Literal"; readonly code: number }
  | {
    readonly _tag: "Class"
    readonly negate: boolean
    /** The class's code units as disjoint ranges sorted by `lo`: membership is a binary search. */
    readonly ranges: ReadonlyArray<ClassItem>
  }

const STAR: Token = { _tag: "Star" }
const ANY: Token = { _tag: "Any" }

/**
 * Parses a class starting after its `[`, as Redis does: `\` quotes the next character, `x-y` is a
 * range (swapped when reversed; Redis reads `a-]` as a range too), and a class left open ends with
 * the pattern. Returns the token and the index after the class.
 */
const parseClass = (pattern: string, start: number): readonly [Token, number] => {
  let i = start
  const negate = pattern[i] === "^"
  if (negate) i++
  const items: Array<ClassItem> = []
  while (i < pattern.length) {
    const c = pattern.charCodeAt(i)
    if (c === 0x5c && pattern.length - i >= 2) { // "\"
      const quoted = pattern.charCodeAt(i + 1)
      items.push({ lo: quoted, hi: quoted })
      i += 2
    } else if (c === 0x5d) { // "]"
      return [{ _tag: "Class", negate, ranges: disjoint(items) }, i + 1]
    } else if (pattern.length - i >= 3 && pattern[i + 1] === "-") {
      const end = pattern.charCodeAt(i + 2)
      items.push({ lo: Math.min(c, end), hi: Math.max(c, end) })
      i += 3
    } else {
      items.push({ lo: c, hi: c })
      i++
    }
  }
  return [{ _tag: "Class", negate, ranges: disjoint(items) }, i]
}

/**
 * A class's items as disjoint ranges sorted by `lo` (overlapping and adjacent ones merged), so
 * that a class of thousands of items (a hostile pattern) costs a binary search per code unit, not
 * a scan of every item.
 */
const disjoint = (items: Array<ClassItem>): ReadonlyArray<ClassItem> => {
  items.sort((a, b) => a.lo - b.lo)
  const out: Array<{ lo: number; hi: number }> = []
  for (const item of items) {
    const last = out[out.length - 1]
    if (last !== undefined && item.lo <= last.hi + 1) last.hi = Math.max(last.hi, item.hi)
    else out.push({ lo: item.lo, hi: item.hi })
  }
  return out
}

/** Whether `code` is in one of `ranges` (disjoint, sorted by `lo`). */
const inRanges = (ranges: ReadonlyArray<ClassItem>, code: number): boolean => {
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const range = ranges[mid]!
    if (code < range.lo) hi = mid - 1
    else if (code > range.hi) lo = mid + 1
    else return true
  }
  return false
}

const compile = (pattern: string): ReadonlyArray<Token> => {
  const tokens: Array<Token> = []
  let i = 0
  while (i < pattern.length) {
    const c = pattern[i]!
    if (c === "*") {
      if (tokens[tokens.length - 1] !== STAR) tokens.push(STAR) // consecutive stars are one
      i++
    } else if (c === "?") {
      tokens.push(ANY)
      i++
    } else if (c === "[") {
      const [token, next] = parseClass(pattern, i + 1)
      tokens.push(token)
      i = next
    } else if (c === "\\" && i + 1 < pattern.length) {
      tokens.push({ _tag: "Literal", code: pattern.charCodeAt(i + 1) })
      i += 2
    } else {
      tokens.push({ _tag: "Literal", code: pattern.charCodeAt(i) }) // a trailing "\" is literal
      i++
    }
  }
  return tokens
}

const matchesOne = (token: Token, code: number): boolean => {
  switch (token._tag) {
    case "Star":
      return false
    case "Any":
      return true
    case "Literal":
      return token.code === code
    case "Class":
      return inRanges(token.ranges, code) !== token.negate
  }
}

/**
 * The two-pointer wildcard match: every token but a star consumes one code unit; on a mismatch the
 * last star absorbs one more code unit and matching resumes after it. Earlier stars never need to
 * be revisited, so the work is at most (key length + 1) × (tokens + 1) steps.
 */
const run = (tokens: ReadonlyArray<Token>, text: string): boolean => {
  let t = 0
  let s = 0
  let starAt = -1
  let starText = 0
  while (s < text.length) {
    const token = tokens[t]
    if (token !== undefined && token._tag === "Star") {
      starAt = t++
      starText = s
    } else if (token !== undefined && matchesOne(token, text.charCodeAt(s))) {
      t++
      s++
    } else if (starAt >= 0) {
      t = starAt + 1
      s = ++starText
    } else {
      return false
    }
  }
  while (t < tokens.length && tokens[t]!._tag === "Star") t++
  return t === tokens.length
}

/**
 * Compiles a Redis glob pattern into a predicate over whole keys. Compile once, match many keys:
 * the pattern is parsed here, and each match takes at most (key length + 1) × (pattern length + 1)
 * steps, whatever the pattern.
 *
 * @example
 * ```ts
 * import { Glob } from "@cache-aside/core"
 * Glob.matcher("user:*")("user:1") // true
 * Glob.matcher("h[a-e]llo")("hello") // true
 * ```
 *
 * @since 0.1.0
 */
export const matcher = (pattern: string): (text: string) => boolean => {
  // Redis' SCAN and KEYS treat a lone "*" as "every key", the empty key included; for any other
  // pattern its matcher needs at least one character of key to match a star against
  if (pattern === "*") return () => true
  const tokens = compile(pattern)
  return (text) => text.length === 0 ? pattern.length === 0 : run(tokens, text)
}
