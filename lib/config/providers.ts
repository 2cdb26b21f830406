/**
 * The providers the router knows, listed once. Every provider union type and per-provider map derives
 * from these lists, so adding a provider is one edit here (and the compiler then points at every place
 * that must handle it). Pure: no imports, no Deno APIs.
 */

/** Every provider, in the order the default allowlist prefers them: the local host first. */
export const PROVIDERS = ["local", "anthropic", "openai"] as const;

/** Where a candidate runs: the local Ollama host(s) or one of the cloud providers. */
export type ProviderName = typeof PROVIDERS[number];

/** The providers reached over the internet with an API key (sorted, as the EDR's `keys` object is). */
export const CLOUD_PROVIDERS = ["anthropic", "openai"] as const;

/** A provider reached over the internet with an API key. */
export type CloudProvider = typeof CLOUD_PROVIDERS[number];

/** Which cloud providers have a key configured (recorded in the EDR as `decision_inputs.keys`). */
export type ProviderKeys = { [P in CloudProvider]: boolean };

/** The environment variable holding each cloud provider's API key. */
export const CLOUD_KEY_ENV: { readonly [P in CloudProvider]: string } = {
  anthropic: "ANTHROPIC_API_KEY",
  openai: "OPENAI_API_KEY",
};

/** True for a cloud provider's name. */
export function isCloudProvider(name: string | null | undefined): name is CloudProvider {
  return (CLOUD_PROVIDERS as readonly string[]).includes(name as string);
}

/** The keys object for a set of configured cloud providers, members in the record's (sorted) order. */
export function providerKeys(configured: (provider: CloudProvider) => boolean): ProviderKeys {
  const keys = {} as ProviderKeys;
  for (const provider of CLOUD_PROVIDERS) keys[provider] = configured(provider);
  return keys;
}
