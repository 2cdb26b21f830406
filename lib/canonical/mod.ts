/**
 * The canonical chat shapes both the inbound dialects (lib/inbound) and the provider adapters
 * (lib/providers) speak, and the tool-argument forms both translate; neither side imports the other.
 */
export * from "./chat.ts";
export { argumentsObject, type ArgumentsReading, argumentsText, readArguments } from "./tool_arguments.ts";
