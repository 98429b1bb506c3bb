import type { Settings } from '../config/index.js';
import { Edge, type EdgeDeps, type ListenerInfo, type RouteTable } from '../edge/index.js';
import { WorkerPool, type PoolOptions } from '../cluster/index.js';
import type { SnapshotPart } from '../metrics/index.js';

/**
 * Where requests are served: in this process (one Edge), or by worker processes
 * (a WorkerPool) while this process keeps the orchestrator and the certificates.
 */
export interface Frontend {
  start(): Promise<void>;
  describe(): ListenerInfo[];
  update(settings: Settings, routes: RouteTable): void;
  /** Stops accepting, lets requests finish until the deadline, then closes everything. */
  drain(deadline: number): Promise<void>;
  /** The workers' metrics, one part per worker (none in process). */
  metrics(): Promise<SnapshotPart[]>;
  workers(): Array<{ index: number; pid: number | undefined; leases: number }>;
}

export class LocalFrontend implements Frontend {
  readonly edge: Edge;

  constructor(deps: EdgeDeps) {
    this.edge = new Edge(deps);
  }

  start(): Promise<void> {
    return this.edge.start();
  }

  describe(): ListenerInfo[] {
    return this.edge.describe();
  }

  update(_settings: Settings, routes: RouteTable): void {
    this.edge.setRoutes(routes);
  }

  async drain(deadline: number): Promise<void> {
    this.edge.stopAccepting();
    await this.edge.finish(deadline);
  }

  async metrics(): Promise<SnapshotPart[]> {
    return [];
  }

  workers(): [] {
    return [];
  }
}

export class ClusterFrontend implements Frontend {
  private readonly pool: WorkerPool;

  constructor(options: PoolOptions) {
    this.pool = new WorkerPool(options);
  }

  start(): Promise<void> {
    return this.pool.start();
  }

  describe(): ListenerInfo[] {
    return this.pool.describe();
  }

  update(settings: Settings): void {
    this.pool.update(settings);
  }

  drain(deadline: number): Promise<void> {
    return this.pool.drain(deadline);
  }

  metrics(): Promise<SnapshotPart[]> {
    return this.pool.metrics();
  }

  workers() {
    return this.pool.workers();
  }
}
