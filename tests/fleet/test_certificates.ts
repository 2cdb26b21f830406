/**
 * Certificates for the fleet tests' TLS servers: a private CA and a server certificate it signed for
 * localhost and 127.0.0.1, made with openssl in a temp folder. Without openssl a TLS test skips with a
 * message, except in CI (`CI` set), where it must run.
 */

/** Whether openssl is installed (to make a TLS server's certificates); throws in CI when it is not. */
export function opensslAvailable(): boolean {
  const found = new Deno.Command("sh", { args: ["-c", "command -v openssl"], stdout: "null", stderr: "null" })
    .outputSync().success;
  if (!found && Deno.env.get("CI")) {
    throw new Error("openssl is not installed, and CI must run the TLS tests: apt-get install -y openssl");
  }
  if (!found) console.warn("skipping: openssl is not installed (apt-get install -y openssl)");
  return found;
}

/** Runs openssl with `args` in `dir`; throws with its output when it fails. */
function openssl(dir: string, args: string[]): void {
  const { success, stderr } = new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .outputSync();
  if (!success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
}

/**
 * A private CA (`ca.pem`) and a server certificate it signed for localhost and 127.0.0.1 (`server.pem`,
 * `server.key`), made in `dir`.
 */
export function makeCertificates(dir: string): void {
  const days = ["-days", "2"];
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    ...days,
    "-subj",
    "/CN=hi-test-ca",
  ]);
  openssl(dir, [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  ]);
  Deno.writeTextFileSync(`${dir}/san.cnf`, "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    ...days,
    "-extfile",
    "san.cnf",
  ]);
}
