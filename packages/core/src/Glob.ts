/**
 * Redis glob patterns: escaping user-supplied text and matching in memory with the same rules as
 * Redis' `stringmatchlen` (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`).
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

const regexSpecial = /[.*+?^${}()|[\]\\/-]/g
const escapeRegex = (c: string): string => c.replace(regexSpecial, "\\$&")

/**
 * Compiles a Redis glob pattern into a `RegExp` that matches whole keys.
 *
 * @example
 * ```ts
 * import { Glob } from "@cache-aside/core"
 * Glob.toRegExp("user:*").test("user:1") // true
 * ```
 *
 * @since 0.1.0
 */
export const toRegExp = (pattern: string): RegExp => {
  let out = "^"
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === "*") {
      out += "[\\s\\S]*"
    } else if (c === "?") {
      out += "[\\s\\S]"
    } else if (c === "\\" && i + 1 < pattern.length) {
      out += escapeRegex(pattern[++i]!)
    } else if (c === "[") {
      let j = i + 1
      let negate = false
      if (pattern[j] === "^") {
        negate = true
        j++
      }
      let cls = ""
      while (j < pattern.length && pattern[j] !== "]") {
        if (pattern[j] === "\\" && j + 1 < pattern.length) {
          cls += escapeRegex(pattern[j + 1]!)
          j += 2
        } else if (pattern[j + 1] === "-" && j + 2 < pattern.length && pattern[j + 2] !== "]") {
          let lo = pattern[j]!
          let hi = pattern[j + 2]!
          if (lo > hi) [lo, hi] = [hi, lo]
          cls += `${escapeRegex(lo)}-${escapeRegex(hi)}`
          j += 3
        } else {
          cls += escapeRegex(pattern[j]!)
          j++
        }
      }
      // Redis treats an unterminated class as ending at the pattern's end.
      out += cls === "" ? (negate ? "[\\s\\S]" : "(?!)") : `[${negate ? "^" : ""}${cls}]`
      i = j
    } else {
      out += escapeRegex(c)
    }
  }
  return new RegExp(out + "$")
}

/**
 * Compiles a Redis glob pattern into a predicate over whole keys.
 *
 * @example
 * ```ts
 * import { Glob } from "@cache-aside/core"
 * Glob.matcher("user:*")("user:1") // true
 * ```
 *
 * @since 0.1.0
 */
export const matcher = (pattern: string): (text: string) => boolean => {
  const regex = toRegExp(pattern)
  return (text) => regex.test(text)
}
