/** The EDR explorer: a read-only JSON API over a record source, and the static page under `/ui`. */
import { fileURLToPath } from "node:url";
export {
  createExplorer,
  type ExplorerHandler,
  type ExplorerOptions,
  explorerPathKind,
  UI_CONTENT_SECURITY_POLICY,
} from "./api.ts";
export { FileRecordSource, type FileSourceOptions } from "./file_source.ts";
export { PgRecordSource, type PgSourceOptions } from "./pg_source.ts";
export type {
  ChainLink,
  DayCount,
  DayVerification,
  ExplorerReplay,
  RecordFilter,
  RecordPage,
  RecordSource,
} from "./source.ts";
export { type DayStats, dayStats, LATENCY_BUCKETS_MS, type RecordSummary, summarize } from "./summary.ts";

/** The repository's `ui/` folder, where the page's files are. */
export const UI_DIR: string = fileURLToPath(new URL("../../ui/", import.meta.url));
