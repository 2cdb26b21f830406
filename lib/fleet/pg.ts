/**
 * The PostgreSQL EDR store of fleet mode (issue 18): connection, migrations, the replica id, the
 * shipper, the database verify and the explorer's queries. This file is the PostgreSQL part's only door.
 */
export {
  databaseReason,
  type DatabaseTarget,
  openDatabase,
  type OpenDatabaseOptions,
  parseDatabaseUrl,
  type Sql,
} from "./pg_connect.ts";
export { migrate, type Migration, MIGRATIONS } from "./pg_schema.ts";
export { checkReplicaId, replicaIdFor } from "./pg_replica.ts";
export { type EdrStore, openEdrStore } from "./pg_store.ts";
export { EdrShipper, type EdrShipperOptions, type EdrShippingStatus } from "./pg_shipper.ts";
export {
  type DatabaseFinding,
  type DatabaseVerifyOptions,
  type DatabaseVerifyResult,
  verifyDatabase,
} from "./pg_verify.ts";
export { type DayRecordsQuery, listDayRecords, recordByRequestId, type RecordSummary } from "./pg_records.ts";
