import { createLogger, guardStdio } from '../common/index.js';
import { defaultNodeSettings, type Settings } from '../config/index.js';
import { Edge } from '../edge/index.js';
import { countDroppedLogLines, MetricsRegistry } from '../metrics/index.js';
import { Forwarder } from '../proxy/index.js';
import { DnsTxtLookup, Router } from '../routing/index.js';
import type { PrimaryMessage, WorkerMessage } from './protocol.js';
import { RemoteCertificates } from './remote-certs.js';
import { RemoteGateway } from './remote-gateway.js';
import { RemoteNodeState } from './remote-node-state.js';
import { RemoteControl } from './remote-control.js';
import { WorkerChannel } from './worker-channel.js';

const log = createLogger('worker');

function send(message: WorkerMessage): void {
  // The primary may be gone (EPIPE); the 'disconnect' handler ends this worker.
  if (process.connected) process.send?.(message, undefined, undefined, () => {});
}

/**
 * A worker process: owns listeners (handles shared by the primary), TLS and
 * proxying; asks the primary for executions and certificates.
 */
export function runWorker(): void {
  const channel = new WorkerChannel((message) => send(message as WorkerMessage));
  guardStdio();
  const metrics = new MetricsRegistry();
  countDroppedLogLines(metrics);
  let edge: Edge | undefined;
  let settings: Settings | undefined;
  const forwarder = new Forwarder();
  const gateway = new RemoteGateway(channel, metrics);
  const nodeState = new RemoteNodeState(channel);
  const control = new RemoteControl(channel);

  const buildRouter = (s: Settings) => new Router({
    domain: s.server.domain,
    routes: s.routes,
    txt: new DnsTxtLookup(s.routing, { metrics }),
    metrics,
  });

  process.on('message', (message: PrimaryMessage) => {
    switch (message.type) {
      case 'init': {
        settings = message.settings;
        edge = new Edge({
          server: settings.server,
          certs: new RemoteCertificates(channel, settings.tls.cacheSize, settings.tls.mode === 'acme'),
          gateway,
          nodeState,
          control,
          routes: buildRouter(settings),
          forwarder,
          metrics,
          version: message.version,
          alephVmVersion: (settings.node ?? defaultNodeSettings()).alephVmVersion,
          inherited: message.inherited,
          ticketKeys: Buffer.from(message.ticketKeys, 'base64'),
          reusePort: true,
        });
        edge.start().then(
          () => send({ type: 'ready', listeners: edge!.describe() }),
          (error: Error) => {
            log.error('worker cannot listen', { error: error.message });
            process.exit(1);
          },
        );
        break;
      }
      case 'settings':
        settings = message.settings;
        edge?.setRoutes(buildRouter(settings));
        break;
      case 'ticket-keys':
        edge?.setTicketKeys(Buffer.from(message.ticketKeys, 'base64'));
        break;
      case 'metrics':
        send({ type: 'reply', id: message.id, ok: true, value: metrics.snapshot() });
        break;
      case 'drain':
        if (!edge) process.exit(0);
        edge.stopAccepting();
        void edge.finish(message.deadline).then(() => {
          forwarder.close();
          send({ type: 'drained' });
          process.exit(0);
        });
        break;
      case 'retired':
        gateway.retired(message.hash);
        break;
      case 'reply':
        channel.settle(message);
        break;
    }
  });
  process.on('disconnect', () => {
    // The primary is gone: nothing can be served correctly any more.
    channel.failAll(new Error('primary went away'));
    process.exit(1);
  });
  // Signals go to the whole process group; the primary coordinates the drain.
  process.on('SIGTERM', () => {});
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  // An ESM worker registers its listener after the IPC channel is up: messages sent
  // before this would be lost, so the primary waits for this hello.
  send({ type: 'hello' });
}
