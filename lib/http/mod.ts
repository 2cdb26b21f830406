/** HTTP request handling: the chat pipeline, routes, OpenAI-shaped errors and metrics. */
export { type ChatDeps, ChatHandler } from "./chat_handler.ts";
export { createRouter, type RouterOptions } from "./router.ts";
export { type EdrSink, openAIErrorBody, RouterError } from "../pipeline/mod.ts";
export { RouterMetrics } from "./metrics.ts";
export {
  configFromEnv,
  exitCannotStart,
  listenEntry,
  policySecretEnvNames,
  readRouterEnv,
  ROUTER_ENV_NAMES,
  type RouterConfig,
} from "./config.ts";
export { type RunningServer, type StartOptions, startServer } from "./server.ts";
