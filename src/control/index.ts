export { ControlService, type ControlServiceDeps } from './service.js';
export { ControlListener, CONTROL_MAX_BODY } from './listener.js';
export { ControlError, statusOf, type ControlErrorCode } from './errors.js';
export { CONTROL_METHODS } from './types.js';
export type { ControlGateway, ControlMethod, ControlReply, ControlRequest, ControlTarget, LogBatch, StreamAuth } from './types.js';
