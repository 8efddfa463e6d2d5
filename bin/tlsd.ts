/* tlsd: the daemon's entry point and composition root: it reads the
 * configuration (USAGE below lists it), starts the supervisor (daemon/)
 * and serves it (api/). `npm start` runs this. */
import type { Server } from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadOrCreateToken, TokenGuard } from '../api/auth.js';
import { groupId, isLoopback, listenOnSocket, listenOnTcp, parseHostPort, prepareSocketDirectory, shimSocketPath } from '../api/listen.js';
import { buildServer } from '../api/server.js';
import { AttachPolicy, parseAllowlist } from '../daemon/attach-policy.js';
import { tracerBinary, version } from '../daemon/paths.js';
import { claimSocketPath } from '../daemon/socket-file.js';
import { Supervisor } from '../daemon/supervisor.js';

const USAGE = `Usage: tlsd [options]   (npm start -- [options])

  --socket PATH       (TLSD_SOCKET)        default /run/tlsd/tlsd.sock (shims connect to tlsd-shim.sock beside it)
  --socket-group G    (TLSD_SOCKET_GROUP)  socket 0660 for group G (name or gid)
  --http HOST:PORT    (TLSD_HTTP)          also listen on TCP, bearer token required
  --token-file F      (TLSD_TOKEN_FILE)    default /run/tlsd/token, created if missing
  --allow-remote                           let --http listen on a non-loopback address
  --attach-allow L    (TLSD_ATTACH_ALLOW)  uids and executables that may be traced
  --rate-limit N      (TLSD_RATE_LIMIT)    requests per second per client, default 1000
  --output-dir D      (TLSD_OUTPUT_DIR)    spawned processes' default output
  --log-level L       (TLSD_LOG_LEVEL)     pino level, default info
  --state-dir D       (TLSD_STATE_DIR)     where the records are kept, default /var/lib/tlsd (:memory: for none on disk)
  --retain-days N     (TLSD_RETAIN_DAYS)   forget what ended more than N days ago, default 0 (no limit)
  --retain-mb N       (TLSD_RETAIN_MB)     keep the records under N MB, default 1024 (0: no limit)
  --syscall-log N     (TLSD_SYSCALL_LOG)   syscall records kept per process, default 100000
  --shim-lease MS     (TLSD_SHIM_LEASE)    how long a shim's syscall engine keeps its rules
                                           when tlsd stops renewing them, default 5000
  --help, --version
`;

/** The options, or an end: usage asked for (0), or a word that is not one
 * of them (2, as a usage error is for tlsctl), without a stack trace. */
function readOptions() {
  try {
    const { values } = parseArgs({
      options: {
        socket: { type: 'string' },
        'socket-group': { type: 'string' },
        http: { type: 'string' },
        'token-file': { type: 'string' },
        'allow-remote': { type: 'boolean' },
        'attach-allow': { type: 'string' },
        'rate-limit': { type: 'string' },
        'output-dir': { type: 'string' },
        'log-level': { type: 'string' },
        'state-dir': { type: 'string' },
        'retain-days': { type: 'string' },
        'retain-mb': { type: 'string' },
        'syscall-log': { type: 'string' },
        'shim-lease': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    if (values.version) {
      process.stdout.write(`tlsd ${version}\n`);
      process.exit(0);
    }
    return values;
  } catch (e) {
    process.stderr.write(`tlsd: ${(e as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}

const values = readOptions();
const env = process.env;
const socketPath = values.socket ?? env.TLSD_SOCKET ?? '/run/tlsd/tlsd.sock';
const outputDir = values['output-dir'] ?? env.TLSD_OUTPUT_DIR ?? path.join(path.dirname(socketPath), 'output');
const log = pino({ name: 'tlsd', level: values['log-level'] ?? env.TLSD_LOG_LEVEL ?? 'info' });

/** A configuration mistake ends the daemon before it traces anything. */
function fail(message: string): never {
  log.fatal(message);
  process.exit(1);
}

function configured<T>(what: string, make: () => T): T {
  try {
    return make();
  } catch (e) {
    return fail(`${what}: ${(e as Error).message}`);
  }
}

const socketGroup = values['socket-group'] ?? env.TLSD_SOCKET_GROUP;
const gid = socketGroup ? configured('TLSD_SOCKET_GROUP', () => groupId(socketGroup)) : undefined;
const allowText = values['attach-allow'] ?? env.TLSD_ATTACH_ALLOW;
const policy = new AttachPolicy(allowText ? configured('TLSD_ATTACH_ALLOW', () => parseAllowlist(allowText)) : undefined);
const rateText = values['rate-limit'] ?? env.TLSD_RATE_LIMIT;
const rateLimit = rateText === undefined ? undefined : Number(rateText);
if (rateLimit !== undefined && !(Number.isInteger(rateLimit) && rateLimit > 0)) fail(`rate limit "${rateText}" is not a positive integer`);
const stateDir = values['state-dir'] ?? env.TLSD_STATE_DIR ?? '/var/lib/tlsd';
/** A retention limit: a number, 0 for none. */
function retentionLimit(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !(Number.isFinite(n) && n >= 0)) fail(`${name} "${text}" is not a number of 0 or more`);
  return n;
}
const retainDays = retentionLimit('--retain-days', values['retain-days'] ?? env.TLSD_RETAIN_DAYS);
const retainMb = retentionLimit('--retain-mb', values['retain-mb'] ?? env.TLSD_RETAIN_MB);
const retention = { ...(retainDays !== undefined ? { days: retainDays } : {}), ...(retainMb !== undefined ? { megabytes: retainMb } : {}) };
const syscallLogText = values['syscall-log'] ?? env.TLSD_SYSCALL_LOG;
const syscallLogLimit = syscallLogText === undefined ? undefined : Number(syscallLogText);
if (syscallLogLimit !== undefined && !(Number.isInteger(syscallLogLimit) && syscallLogLimit > 0)) fail(`--syscall-log "${syscallLogText}" is not a positive integer`);
const leaseText = values['shim-lease'] ?? env.TLSD_SHIM_LEASE;
const shimLeaseMs = leaseText === undefined ? undefined : Number(leaseText);
if (shimLeaseMs !== undefined && !(Number.isInteger(shimLeaseMs) && shimLeaseMs >= 100 && shimLeaseMs <= 3_600_000)) fail(`--shim-lease "${leaseText}" is not a number of milliseconds in 100..3600000`);
const httpText = values.http ?? env.TLSD_HTTP;
const tcp = httpText ? configured('--http', () => parseHostPort(httpText)) : undefined;
if (tcp && !isLoopback(tcp.host) && !values['allow-remote']) {
  fail(`--http ${httpText} is not a loopback address: anyone who can reach it and has the token can read traced memory; add --allow-remote to mean it`);
}
const tokenFile = values['token-file'] ?? env.TLSD_TOKEN_FILE ?? '/run/tlsd/token';
const tokenGuard = tcp ? new TokenGuard(configured('token file', () => loadOrCreateToken(tokenFile))) : undefined;

configured('socket directory', () => prepareSocketDirectory(socketPath, gid));
// Before anything else listens or is traced: another daemon may serve here.
await claimSocketPath(socketPath, 'API socket').catch((e: Error) => fail(e.message));
let supervisor: Supervisor;
try {
  supervisor = await Supervisor.start({ tracerPath: tracerBinary, outputDir, log, policy, shimSocket: shimSocketPath(socketPath), stateDir, retention,
    ...(syscallLogLimit !== undefined ? { syscallLogLimit } : {}), ...(shimLeaseMs !== undefined ? { shimLeaseMs } : {}) });
} catch (e) {
  fail((e as Error).message);
}
const app = buildServer({ supervisor, version, log, ...(tokenGuard ? { tokenGuard } : {}), ...(rateLimit ? { rateLimit } : {}) });
let tcpServer: Server | undefined;
try {
  await listenOnSocket(app, socketPath, gid);
  if (tcp && tokenGuard) {
    tcpServer = await listenOnTcp(app, tcp, tokenGuard);
    if (!isLoopback(tcp.host)) log.warn({ http: httpText }, 'listening on a non-loopback address (--allow-remote)');
  }
} catch (e) {
  log.fatal({ err: e }, 'cannot listen');
  await supervisor.close();
  process.exit(1);
}
log.info({
  socket: socketPath, ...(tcp ? { http: httpText, tokenFile } : {}), version, tracerPid: supervisor.tracerPid, policy: policy.describe(),
  records: supervisor.records.file, run: supervisor.registry.run,
}, 'tlsd listening');

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping: detaching every tracee');
  await supervisor.close(); // first: it is what must not be left undone
  tcpServer?.closeAllConnections();
  tcpServer?.close();
  await app.close();
  process.exit(0);
}
// A bug must not take the tracees' supervisor down with it.
process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
