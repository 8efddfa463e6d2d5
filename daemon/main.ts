/* tlsd: the daemon. `npm start` runs this.
 *
 *   --socket PATH   (or TLSD_SOCKET)      default /run/tlsd/tlsd.sock
 *   --output-dir D  (or TLSD_OUTPUT_DIR)  spawned processes' default output
 *   --log-level L   (or TLSD_LOG_LEVEL)   pino level, default info
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { buildServer } from '../api/server.js';
import { listenOnSocket } from './listen.js';
import { tracerBinary, version } from './paths.js';
import { Supervisor } from './supervisor.js';

const { values } = parseArgs({
  options: {
    socket: { type: 'string' },
    'output-dir': { type: 'string' },
    'log-level': { type: 'string' },
  },
});
const socketPath = values.socket ?? process.env.TLSD_SOCKET ?? '/run/tlsd/tlsd.sock';
const outputDir = values['output-dir'] ?? process.env.TLSD_OUTPUT_DIR ?? path.join(path.dirname(socketPath), 'output');
const log = pino({ name: 'tlsd', level: values['log-level'] ?? process.env.TLSD_LOG_LEVEL ?? 'info' });

const supervisor = await Supervisor.start({ tracerPath: tracerBinary, outputDir, log });
const app = buildServer({ supervisor, version, log });
try {
  await listenOnSocket(app, socketPath);
} catch (e) {
  log.fatal({ err: e }, 'cannot listen');
  await supervisor.close();
  process.exit(1);
}
log.info({ socket: socketPath, version, tracerPid: supervisor.tracerPid }, 'tlsd listening');

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping: detaching every tracee');
  await supervisor.close(); // first: it is what must not be left undone
  await app.close();
  process.exit(0);
}
// A bug must not take the tracees' supervisor down with it.
process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
