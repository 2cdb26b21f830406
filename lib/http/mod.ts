/** HTTP request handling: the chat pipeline, routes, OpenAI-shaped errors and metrics. */
export { type ChatDeps, ChatHandler } from "./chat_handler.ts";
export { createRouter, type RouterOptions } from "./router.ts";
export { openAIErrorBody, RouterError } from "./errors.ts";
export { RouterMetrics } from "./metrics.ts";
export type { EdrSink } from "./exchange.ts";
export {
  configFromEnv,
  exitCannotStart,
  readRouterEnv,
  ROUTER_ENV_NAMES,
  type RouterConfig,
} from "./config.ts";
export { type RunningServer, type StartOptions, startServer } from "./server.ts";
