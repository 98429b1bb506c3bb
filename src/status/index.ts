export type { StatusProvider, StatusSnapshot, ReloadResult } from './types.js';
