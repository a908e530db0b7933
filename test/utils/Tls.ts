/**
 * Fixtures for TLS, password and ACL tests: certificates generated with `openssl` (a CA, a server
 * certificate for 127.0.0.1/localhost, a client certificate, and an unrelated CA) in a temporary
 * directory, and scoped `redis-server` processes started with extra flags (TLS, `requirepass`) on
 * free ports. Both are removed or killed when the scope closes. `openssl` and `redis-server` must be
 * on PATH (Debian: `apt-get install openssl redis-server`; Debian's redis-server is built with TLS).
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { freePort, rawCommand } from "./RedisServer.js"

export class FixtureError
  extends Data.TaggedError("FixtureError")<{ readonly message: string; readonly cause?: unknown }>
{}

export interface Certificates {
  readonly dir: string
  /** PEM contents. */
  readonly ca: string
  readonly serverCert: string
  readonly clientCert: string
  readonly clientKey: string
  /** A CA that signed nothing here: trusting only it must fail the handshake. */
  readonly otherCa: string
  /** Paths, for the server's flags and the `REDIS_TLS_*_FILE` variables. */
  readonly files: {
    readonly ca: string
    readonly serverCert: string
    readonly serverKey: string
    readonly clientCert: string
    readonly clientKey: string
  }
}

const openssl = (dir: string, args: ReadonlyArray<string>): void => {
  ChildProcess.execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] })
}

/** A CA, server and client certificates (RSA 2048, valid 2 days) in a temporary directory removed with the scope. */
export const certificates: Effect.Effect<Certificates, FixtureError, Scope.Scope> = Effect.acquireRelease(
  Effect.try({
    try: () => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "cache-aside-tls-"))
      const ca = (name: string) =>
        openssl(dir, [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-keyout",
          `${name}.key`,
          "-out",
          `${name}.crt`,
          "-days",
          "2",
          "-subj",
          `/CN=${name}`
        ])
      const signed = (name: string, subject: string, extensions: string) => {
        openssl(dir, [
          "req",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-keyout",
          `${name}.key`,
          "-out",
          `${name}.csr`,
          "-subj",
          subject
        ])
        Fs.writeFileSync(Path.join(dir, `${name}.ext`), extensions)
        openssl(dir, [
          "x509",
          "-req",
          "-in",
          `${name}.csr`,
          "-CA",
          "ca.crt",
          "-CAkey",
          "ca.key",
          "-CAcreateserial",
          "-out",
          `${name}.crt`,
          "-days",
          "2",
          "-extfile",
          `${name}.ext`
        ])
      }
      ca("ca")
      ca("other-ca")
      signed("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
      signed("client", "/CN=cache-client", "extendedKeyUsage=clientAuth\n")
      const file = (name: string) => Path.join(dir, name)
      const read = (name: string) => Fs.readFileSync(file(name), "utf8")
      return {
        dir,
        ca: read("ca.crt"),
        serverCert: read("server.crt"),
        clientCert: read("client.crt"),
        clientKey: read("client.key"),
        otherCa: read("other-ca.crt"),
        files: {
          ca: file("ca.crt"),
          serverCert: file("server.crt"),
          serverKey: file("server.key"),
          clientCert: file("client.crt"),
          clientKey: file("client.key")
        }
      }
    },
    catch: (cause) => new FixtureError({ message: "openssl failed (is it installed?)", cause })
  }),
  ({ dir }) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

export interface ExtraServer {
  readonly host: string
  /** The plain (non-TLS) port; 0 when the server listens on TLS only. */
  readonly port: number
  /** The TLS port, when started with certificates. */
  readonly tlsPort: number
  /** SIGKILL. */
  readonly kill: Effect.Effect<void>
}

export interface ServerOptions {
  /** Serve TLS on a second port with these certificates. */
  readonly tls?: { readonly certificates: Certificates; readonly requireClientCert: boolean } | undefined
  /** Extra `redis-server` arguments, e.g. `["--requirepass", "pw"]`. */
  readonly args?: ReadonlyArray<string> | undefined
}

const spawn = (args: ReadonlyArray<string>) =>
  Effect.sync(() => {
    const output: Array<string> = []
    const child = ChildProcess.spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] })
    const keep = (chunk: Buffer) => {
      output.push(chunk.toString("utf8"))
      if (output.length > 50) output.shift()
    }
    child.stdout?.on("data", keep)
    child.stderr?.on("data", keep)
    child.on("error", () => {})
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    return { child, output, exited }
  })

const stop = (running: Effect.Effect.Success<ReturnType<typeof spawn>>) =>
  Effect.promise(() => {
    if (running.child.exitCode !== null || running.child.signalCode !== null) return Promise.resolve()
    running.child.kill("SIGCONT")
    running.child.kill("SIGKILL")
    return running.exited
  })

/**
 * A `redis-server` with extra flags, for the scope's lifetime. Always listens on a plain port too
 * (answering PING there tells it started). A port taken meanwhile by another test: tried again on
 * fresh ports.
 */
export const startServer = (options: ServerOptions = {}): Effect.Effect<ExtraServer, FixtureError, Scope.Scope> =>
  Effect.gen(function*() {
    const host = "127.0.0.1"
    const port = yield* Effect.mapError(freePort, (cause) => new FixtureError({ message: "no free port", cause }))
    const tlsPort = options.tls === undefined
      ? 0
      : yield* Effect.mapError(freePort, (cause) => new FixtureError({ message: "no free port", cause }))
    const args = ["--port", String(port), "--bind", host, "--save", "", "--appendonly", "no", "--loglevel", "warning"]
    if (options.tls !== undefined) {
      const { files } = options.tls.certificates
      args.push(
        "--tls-port",
        String(tlsPort),
        "--tls-cert-file",
        files.serverCert,
        "--tls-key-file",
        files.serverKey,
        "--tls-ca-cert-file",
        files.ca,
        "--tls-auth-clients",
        options.tls.requireClientCert ? "yes" : "no"
      )
    }
    args.push(...(options.args ?? []))
    const running = yield* Effect.acquireRelease(spawn(args), stop)
    // any reply (PONG, or NOAUTH with requirepass) means it listens
    yield* rawCommand(host, port, ["PING"], 500).pipe(
      Effect.filterOrFail((reply) => reply === "+PONG" || reply.startsWith("-NOAUTH"), () => "not ready"),
      Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 150 }),
      Effect.mapError(() => new FixtureError({ message: `redis-server did not start:\n${running.output.join("")}` }))
    )
    return { host, port, tlsPort, kill: stop(running) }
  }).pipe(
    Effect.retry({ times: 2 }),
    // real time: the fixture may be built under a TestClock (it.layer, it.effect)
    Effect.withClock(Clock.make())
  )
