/** The router's release version, recorded in every EDR's environment and checked by replay. */
export const ROUTER_VERSION = "0.3.0";
