/**
 * `local/no-chai-deep-equality`: chai's deep equality (vitest's `assert.deepStrictEqual`,
 * `expect(...).toEqual`, ...) compares iterable objects through their iterators, so it cannot tell
 * `Option.none()` from `Option.some(x)` (nor an `Either` or `Exit` from another). In test files, deep
 * comparisons go through `@effect/vitest/utils` (`assertSome`, `assertNone`, `assertLeft`,
 * `assertRight`, `assertSuccess`, `assertFailure`, `deepStrictEqual`, built on `node:assert`, which
 * compares prototypes and own properties), or through `expect` after `addEqualityTesters()` (which
 * makes vitest's `equals` use Effect's `Equal`).
 *
 * The rule is a blanket ban of chai's deep equality in test files rather than a type-aware check of
 * the compared values: an `unknown`, a generic or a plain object holding an Option all hide Effect
 * data from the types, and `@effect/vitest/utils`' `deepStrictEqual` compares plain data just as well.
 */

/** Where `assert` is chai's assert. `node:assert` is left alone: its strict deep equality compares prototypes. */
const CHAI_SOURCES = new Set(["vitest", "@effect/vitest", "chai"])

/** chai assert methods with deep equality: deepEqual, deepStrictEqual, notDeepEqual, sameDeepMembers, deepInclude, ... */
const isDeepAssertMethod = (name) => /deep/i.test(name)

/** vitest `expect` matchers (and chai-style chains) that use deep equality. */
const DEEP_MATCHERS = new Set([
  "toEqual",
  "toStrictEqual",
  "toContainEqual",
  "toMatchObject",
  "toHaveBeenCalledWith",
  "toHaveBeenLastCalledWith",
  "toHaveBeenNthCalledWith",
  "toHaveReturnedWith",
  "toHaveLastReturnedWith",
  "toHaveNthReturnedWith",
  "deep",
  "eql"
])

const propertyName = (member) =>
  member.computed
    ? (member.property.type === "Literal" && typeof member.property.value === "string" ? member.property.value : undefined)
    : member.property.name

/** Whether a member chain like `expect(x).not.toEqual` or `expect.soft(x).toEqual` starts with a call of `expect`. */
const startsWithExpect = (node) => {
  let current = node
  while (current) {
    if (current.type === "MemberExpression") current = current.object
    else if (current.type === "CallExpression") {
      const callee = current.callee
      if (callee.type === "Identifier" && callee.name === "expect") return true
      if (
        callee.type === "MemberExpression" && callee.object.type === "Identifier" && callee.object.name === "expect"
      ) return true
      current = callee
    } else if (current.type === "ChainExpression") current = current.expression
    else return false
  }
  return false
}

const ADVICE = "use assertSome/assertNone/assertLeft/assertRight/assertSuccess/assertFailure or deepStrictEqual " +
  "from \"@effect/vitest/utils\""

export default {
  meta: {
    type: "problem",
    docs: { description: "chai's deep equality cannot tell Option.none() from Option.some(x): use @effect/vitest/utils" },
    schema: [],
    messages: {
      assert: "chai's assert.{{name}} cannot tell Option.none() from Option.some(x) (it compares iterators): " +
        ADVICE + ".",
      expect: "expect(...).{{name}} uses chai/vitest deep equality, which cannot tell Option.none() from " +
        "Option.some(x) unless addEqualityTesters() from \"@effect/vitest\" is called in this file: " + ADVICE + "."
    }
  },
  create(context) {
    /** local names bound to chai's assert, e.g. `assert` from `import { assert } from "@effect/vitest"` */
    const chaiAsserts = new Set()
    let equalityTesters = false
    const pendingExpects = []
    return {
      ImportDeclaration(node) {
        if (!CHAI_SOURCES.has(node.source.value)) return
        for (const specifier of node.specifiers) {
          if (specifier.type === "ImportSpecifier" && specifier.imported.name === "assert") {
            chaiAsserts.add(specifier.local.name)
          }
        }
      },
      CallExpression(node) {
        const callee = node.callee
        if (callee.type === "Identifier" && callee.name === "addEqualityTesters") equalityTesters = true
        if (
          callee.type === "MemberExpression" && callee.property.type === "Identifier" &&
          callee.property.name === "addEqualityTesters"
        ) equalityTesters = true
      },
      MemberExpression(node) {
        const name = propertyName(node)
        if (name === undefined) return
        // assert.deepStrictEqual(...), chai.assert.deepEqual(...)
        const object = node.object
        const isChaiAssert = (object.type === "Identifier" && chaiAsserts.has(object.name)) ||
          (object.type === "MemberExpression" && object.object.type === "Identifier" &&
            object.object.name === "chai" && propertyName(object) === "assert")
        if (isChaiAssert && isDeepAssertMethod(name)) {
          context.report({ node: node.property, messageId: "assert", data: { name } })
          return
        }
        if (DEEP_MATCHERS.has(name) && startsWithExpect(node.object)) pendingExpects.push({ node, name })
      },
      "Program:exit"() {
        if (equalityTesters) return
        for (const { name, node } of pendingExpects) {
          context.report({ node: node.property, messageId: "expect", data: { name } })
        }
      }
    }
  }
}
