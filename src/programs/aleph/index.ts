export { AlephProgramSource, type AlephSourceOptions } from './source.js';
export { MessageStream, type StreamOptions } from './stream.js';
export { AlephClient, FetchError } from './client.js';
export { ArtifactCache } from './cache.js';
export { Downloader, type Artifact } from './download.js';
export { parseProgramMessage, parseStoreMessage, touchedHashes, MessageError, type ProgramSpec, type StoreSpec } from './message.js';
export { findSandbox, processLaunch, vmLaunch, CODE_MOUNT } from './launch.js';
