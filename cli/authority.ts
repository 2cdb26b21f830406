/**
 * Operator tool for authority blocks and client keys:
 *   deno task authority sign --issuer ID --scope S [--scope S…] --ttl N [--lease-id L]
 *                            (--hmac-secret-env NAME | --ed25519-private-key FILE) [--now SECONDS]
 *   deno task authority keygen        prints an Ed25519 key pair (public key for the policy, PEM private key)
 *   deno task authority hash-key      reads a client key on stdin and prints its sha256 for client_keys
 *   deno task authority --help        prints the usage
 * Exit codes: 0 success, 1 runtime error (unreadable key, unset secret), 64 usage error.
 */
import { parseArgs } from "node:util";
import { concatBytes } from "../lib/bytes.ts";
import {
  authorityBlockSchema,
  generateEd25519KeyPair,
  hashClientKey,
  importEd25519PrivateKey,
  signAuthority,
  type SigningKey,
} from "../lib/authority/mod.ts";

const USAGE = `usage:
  authority sign --issuer ID --scope SCOPE [--scope SCOPE…] --ttl SECONDS [--lease-id ID]
                 (--hmac-secret-env NAME | --ed25519-private-key FILE) [--now UNIX_SECONDS]
      prints a signed authority block (JSON) for a request's routing_contract
  authority keygen
      prints an Ed25519 key pair: the public key for the policy, the PEM private key for signing
  authority hash-key < key.txt
      reads a client key on stdin and prints its sha256 for the policy's client_keys
  authority --help
Exit codes: 0 success, 1 runtime error (unreadable key, unset secret), 64 usage error.`;

class UsageError extends Error {}

async function sign(args: string[]): Promise<string> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      issuer: { type: "string" },
      scope: { type: "string", multiple: true },
      ttl: { type: "string" },
      "lease-id": { type: "string" },
      "hmac-secret-env": { type: "string" },
      "ed25519-private-key": { type: "string" },
      now: { type: "string" },
    },
  });
  if (values.issuer === undefined) throw new UsageError("--issuer is required; pass the issuer id");
  if (values.scope === undefined) throw new UsageError("--scope is required; pass it once per scope");
  if (values.ttl === undefined || !/^\d+$/.test(values.ttl)) {
    throw new UsageError("--ttl is required; pass a whole number of seconds");
  }
  if (values.now !== undefined && !/^\d+$/.test(values.now)) {
    throw new UsageError("--now must be whole unix seconds");
  }
  const hmacEnv = values["hmac-secret-env"];
  const keyFile = values["ed25519-private-key"];
  if ((hmacEnv === undefined) === (keyFile === undefined)) {
    throw new UsageError("pass exactly one of --hmac-secret-env or --ed25519-private-key");
  }
  const candidate = {
    issued_by: values.issuer,
    scope: values.scope,
    ttl: Number(values.ttl),
    lease_id: values["lease-id"] ?? crypto.randomUUID(),
    issued_at: values.now === undefined ? Math.floor(Date.now() / 1000) : Number(values.now),
  };
  const parsed = authorityBlockSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`the block would be invalid at ${issue.path.join(".")}: ${issue.message}`);
  }
  let key: SigningKey;
  if (hmacEnv !== undefined) {
    const secret = Deno.env.get(hmacEnv);
    if (!secret) {
      throw new Error(`environment variable ${hmacEnv} is unset or empty; export the issuer's secret`);
    }
    key = { hmacSecret: secret };
  } else {
    key = { ed25519PrivateKey: await importEd25519PrivateKey(await Deno.readTextFile(keyFile!)) };
  }
  return JSON.stringify(await signAuthority(parsed.data, key));
}

async function hashKey(args: string[]): Promise<string> {
  if (args.length > 0) throw new UsageError("hash-key takes no arguments; pipe the key on stdin");
  const chunks: Uint8Array[] = [];
  for await (const chunk of Deno.stdin.readable) chunks.push(chunk);
  const key = new TextDecoder().decode(concatBytes(chunks)).replace(/\r?\n$/, "");
  if (key.length === 0) throw new UsageError("stdin held no key; pipe the client key on stdin");
  return hashClientKey(key);
}

/** Runs the CLI and returns its exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === "--help" || command === "-h" || command === "help" || rest.includes("--help")) {
    console.log(USAGE);
    return 0;
  }
  try {
    let output: string;
    if (command === "sign") output = await sign(rest);
    else if (command === "keygen") {
      if (rest.length > 0) throw new UsageError("keygen takes no arguments");
      output = JSON.stringify(await generateEd25519KeyPair(), null, 2);
    } else if (command === "hash-key") output = await hashKey(rest);
    else throw new UsageError(command === undefined ? "give a command" : `unknown command "${command}"`);
    console.log(output);
    return 0;
  } catch (error) {
    const usage = error instanceof UsageError ||
      (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"));
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    if (usage) {
      console.error(USAGE);
      return 64;
    }
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
