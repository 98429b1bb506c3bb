export type { Lease, ExecutionGateway, ExecutionInfo, ExecutionState } from './types.js';
