import assert from "node:assert/strict";
import {
  authorityPolicySchema,
  checkAuthority,
  type Ed25519KeyPair,
  hashClientKey,
  LeaseStore,
} from "../../lib/authority/mod.ts";

const CLI = new URL("../../cli/authority.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

async function runCli(args: string[], opts: { env?: Record<string, string>; stdin?: string } = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--config", CONFIG, "--allow-env", "--allow-read", CLI, ...args],
    env: opts.env,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(opts.stdin));
    await writer.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("the authority CLI signs blocks the router accepts", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "authority_cli_" });
  const leases = await LeaseStore.open(dir);
  const issuedAt = 1_700_000_000;
  try {
    await t.step("sign with an HMAC secret prints a block that verifies", async () => {
      const run = await runCli([
        "sign",
        "--issuer",
        "ops",
        "--scope",
        "chat:completions",
        "--scope",
        "metrics:read",
        "--ttl",
        "60",
        "--lease-id",
        "cli-hmac-1",
        "--hmac-secret-env",
        "CLI_TEST_SECRET",
        "--now",
        String(issuedAt),
      ], { env: { CLI_TEST_SECRET: "cli-secret" } });
      assert.equal(run.code, 0, run.stderr);
      const block = JSON.parse(run.stdout);
      assert.deepEqual(block.scope, ["chat:completions", "metrics:read"]);
      const policy = authorityPolicySchema.parse({ issuers: [{ id: "ops", hmac_secret_env: "OPS" }] });
      const result = await checkAuthority(block, {
        required: true,
        neededScope: "metrics:read",
        policy,
        now: issuedAt * 1000,
        leases,
        secrets: { OPS: "cli-secret" },
      });
      assert.equal(result.ok, true, !result.ok ? result.message : "");
      assert.equal(result.ok && result.summary?.signed, true);
    });

    await t.step(
      "keygen prints a key pair whose private half signs blocks the public half verifies",
      async () => {
        const keygen = await runCli(["keygen"]);
        assert.equal(keygen.code, 0, keygen.stderr);
        const pair = JSON.parse(keygen.stdout) as Ed25519KeyPair;
        const keyFile = `${dir}/issuer.key.json`;
        await Deno.writeTextFile(keyFile, keygen.stdout);
        const pemFile = `${dir}/issuer.pem`;
        await Deno.writeTextFile(pemFile, pair.ed25519_private_key_pem);
        const policy = authorityPolicySchema.parse({
          issuers: [{ id: "edge", ed25519_public_key: pair.ed25519_public_key }],
        });
        for (const [index, file] of [keyFile, pemFile].entries()) {
          const run = await runCli([
            "sign",
            "--issuer",
            "edge",
            "--scope",
            "chat:completions",
            "--ttl",
            "30",
            "--lease-id",
            `cli-ed-${index}`,
            "--ed25519-private-key",
            file,
            "--now",
            String(issuedAt),
          ]);
          assert.equal(run.code, 0, run.stderr);
          const result = await checkAuthority(JSON.parse(run.stdout), {
            required: true,
            neededScope: "chat:completions",
            policy,
            now: issuedAt * 1000,
            leases,
            secrets: {},
          });
          assert.equal(result.ok, true, !result.ok ? result.message : "");
        }
      },
    );

    await t.step("hash-key prints the sha256 of the key read from stdin", async () => {
      const run = await runCli(["hash-key"], { stdin: "sk-client-1\n" });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout.trim(), hashClientKey("sk-client-1"));
    });

    await t.step("usage errors exit 64", async () => {
      for (
        const args of [
          [],
          ["frobnicate"],
          ["sign", "--issuer", "ops"],
          ["sign", "--issuer", "ops", "--scope", "x", "--ttl", "5"],
          ["sign", "--bogus"],
          [
            "sign",
            "--issuer",
            "ops",
            "--scope",
            "x",
            "--ttl",
            "5",
            "--lease-id",
            "bad id",
            "--hmac-secret-env",
            "X",
          ],
        ]
      ) {
        const run = await runCli(args, { env: { X: "y" } });
        assert.equal(run.code, 64, `${args.join(" ")}: ${run.stderr}`);
      }
    });

    await t.step("an unset secret variable is a runtime error, not a silent unsigned block", async () => {
      const run = await runCli([
        "sign",
        "--issuer",
        "ops",
        "--scope",
        "x",
        "--ttl",
        "5",
        "--hmac-secret-env",
        "CLI_TEST_UNSET_SECRET",
      ]);
      assert.equal(run.code, 1);
      assert.equal(run.stdout, "");
    });
  } finally {
    await leases.close();
    await Deno.remove(dir, { recursive: true });
  }
});
