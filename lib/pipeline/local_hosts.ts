/**
 * The local Ollama hosts the router runs on: one per `OLLAMA_HOST` entry, each with its own health gate
 * (probe loop, model list, circuit), heavy slot and adapter. With one host this is a list of one, and the
 * request path uses the single-host route it always had.
 */
import type { LocalHostView } from "../contract/mod.ts";
import type { HealthGate, HealthSnapshot } from "../health/mod.ts";
import type { ProviderAdapter } from "../providers/mod.ts";
import type { HostSlot, SlotSnapshot } from "../slot/mod.ts";

/** One local Ollama host and what belongs to it. */
export interface LocalHost {
  /** Its base URL as normalized from `OLLAMA_HOST` (lib/config/ollama_host.ts); the `host` label. */
  readonly url: string;
  readonly health: HealthGate;
  readonly slot: HostSlot;
  readonly adapter: ProviderAdapter;
}

/** One host's snapshots at decision time (what decide() reads, and what the record keeps of it). */
export interface HostSnapshot extends LocalHostView {
  health: HealthSnapshot;
  slot: SlotSnapshot;
}

/** Every host's snapshots, in configured order, as decide() reads them. */
export function hostViews(hosts: readonly LocalHost[]): HostSnapshot[] {
  return hosts.map((h) => ({ host: h.url, health: h.health.snapshot(), slot: h.slot.snapshot() }));
}

const STATE_RANK = { fit: 0, unknown: 1, unfit: 2 } as const;

/**
 * The best host's snapshot: whether local work can run anywhere. It feeds the host-less gauges and
 * log lines kept from the single-host router; the per-host ones say which host is which.
 */
export function bestSnapshot(hosts: readonly LocalHost[]): HealthSnapshot {
  let best = hosts[0].health.snapshot();
  for (let i = 1; i < hosts.length; i++) {
    const snapshot = hosts[i].health.snapshot();
    if (STATE_RANK[snapshot.state] < STATE_RANK[best.state]) best = snapshot;
  }
  return best;
}

/** The slots summed over hosts, for the host-less gauges: held slots and waiting requests. */
export function slotTotals(hosts: readonly LocalHost[]): { busy: number; queueDepth: number } {
  let busy = 0;
  let queueDepth = 0;
  for (const host of hosts) {
    const s: SlotSnapshot = host.slot.snapshot();
    if (s.busy) busy++;
    queueDepth += s.queue_depth;
  }
  return { busy, queueDepth };
}
