export { AlephProgramSource, type AlephSourceOptions } from './source.js';
export { MessageStream, type StreamOptions } from './stream.js';
export { AlephClient, FetchError } from './client.js';
export { ArtifactCache } from './cache.js';
export { Downloader, type Artifact } from './download.js';
export { parseProgramMessage, parseInstanceMessage, parsePortForwarding, checkAuthorizedKey, parseStoreMessage, touchedHashes, MessageError, type ProgramSpec, type InstanceSpec, type StoreSpec } from './message.js';
export { inspectDiskImage, DiskImageError, type DiskImage } from './disk-image.js';
export { findSandbox, hostnameOf, processLaunch, vmLaunch, CODE_MOUNT } from './launch.js';
