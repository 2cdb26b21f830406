/**
 * Configuration rules shared by the router, the launcher and replay: how `OLLAMA_HOST` reads, and the
 * one list of providers. Pure and dependency-free, so any module may import it.
 * @module
 */
export {
  DEFAULT_OLLAMA_URL,
  normalizeOllamaHost,
  OllamaHostError,
  ollamaNetEntry,
  parseOllamaHosts,
} from "./ollama_host.ts";
export {
  CLOUD_KEY_ENV,
  CLOUD_PROVIDERS,
  type CloudProvider,
  isCloudProvider,
  type ProviderKeys,
  providerKeys,
  type ProviderName,
  PROVIDERS,
} from "./providers.ts";
