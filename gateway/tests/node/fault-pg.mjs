// A Postgres server for the fault-injection run: the server of CHAT_TEST_DATABASE_URL (a fresh
// database is created in it and dropped at the end), otherwise a throwaway cluster (initdb into a
// temporary directory, run as `postgres` via runuser when we are root, fsync off, a free port of
// 127.0.0.1), stopped and deleted at the end. Mirrors storage/src/test_support.rs. Never skips:
// when neither works, it throws saying why.
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePort } from './harness.mjs';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function findBinDir() {
  if (process.env.CHAT_TEST_PG_BIN) return process.env.CHAT_TEST_PG_BIN;
  for (const dir of (process.env.PATH || '').split(':')) {
    if (dir && existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => /^\d+$/.test(v) && existsSync(path.join(root, v, 'bin', 'initdb'))).map(Number).sort((a, b) => a - b)
    : [];
  if (!versions.length) {
    throw new Error('no Postgres server binaries found (initdb, pg_ctl): install PostgreSQL, set CHAT_TEST_PG_BIN, or set CHAT_TEST_DATABASE_URL');
  }
  return path.join(root, String(versions.at(-1)), 'bin');
}

function findPsql(binDir) {
  if (binDir && existsSync(path.join(binDir, 'psql'))) return path.join(binDir, 'psql');
  return 'psql';
}

function run(cmd, args, { asPostgres = false, timeout = 60_000 } = {}) {
  const [file, argv] = asPostgres ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  const r = spawnSync(file, argv, { encoding: 'utf8', timeout, maxBuffer: 1 << 30 });
  if (r.error) throw new Error(`cannot run ${cmd}: ${r.error.message}`);
  return r;
}

/** Runs SQL with psql; returns stdout rows split on tabs (`-At -F '\t'`). Throws on error. */
export function psqlRows(psql, url, sql) {
  const r = run(psql, [url, '-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-c', sql], { timeout: 120_000 });
  if (r.status !== 0) throw new Error(`psql failed (${r.status}): ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.length).map((l) => l.split('\t'));
}

function withDatabase(url, db) {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function waitReady(psql, url, ms) {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    const r = run(psql, [url, '-X', '-At', '-c', 'SELECT 1'], { timeout: 10_000 });
    if (r.status === 0) return null;
    last = r.stderr;
    spawnSync('sleep', ['0.2']);
  }
  return last || 'timed out';
}

/**
 * Returns { url, kind, query(sql) -> rows, stop() }. `stop` is synchronous (safe from an exit
 * handler) and idempotent.
 */
export async function startPostgres(log = () => {}) {
  const external = (process.env.CHAT_TEST_DATABASE_URL || '').trim();
  let binDir = null;
  try { binDir = findBinDir(); } catch (e) { if (!external) throw e; }
  const psql = findPsql(binDir);
  if (external) {
    const err = waitReady(psql, external, 10_000);
    if (err === null) {
      const name = `chat_fault_${randomBytes(6).toString('hex')}`;
      psqlRows(psql, external, `CREATE DATABASE "${name}"`);
      const url = withDatabase(external, name);
      let stopped = false;
      log(`postgres: database ${name} on CHAT_TEST_DATABASE_URL`);
      return {
        url,
        kind: 'external',
        query: (sql) => psqlRows(psql, url, sql),
        stop() {
          if (stopped) return;
          stopped = true;
          try { psqlRows(psql, external, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`); } catch (e) { console.error(`cannot drop ${name}: ${e.message}`); }
        },
      };
    }
    console.error(`CHAT_TEST_DATABASE_URL is not reachable (${err.trim()}); starting a throwaway cluster instead`);
    if (!binDir) binDir = findBinDir();
  }

  const dir = mkdtempSync(path.join(tmpdir(), 'chat-fault-pg-'));
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  let stopped = false;
  const pgctl = path.join(binDir, 'pg_ctl');
  const cluster = {
    kind: 'throwaway',
    dir,
    stop() {
      if (stopped) return;
      stopped = true;
      if (existsSync(path.join(data, 'postmaster.pid'))) {
        run(pgctl, ['-D', data, 'stop', '-m', 'immediate', '-w', '-t', '30'], { asPostgres: isRoot });
      }
      rmSync(dir, { recursive: true, force: true });
    },
    serverLog: () => { try { return readFileSync(logFile, 'utf8'); } catch { return ''; } },
  };
  try {
    if (isRoot) {
      const r = run('chown', ['-R', 'postgres:postgres', dir]);
      if (r.status !== 0) throw new Error(`running as root, the throwaway Postgres must run as \`postgres\`, but chown failed: ${r.stderr}; create that user or set CHAT_TEST_DATABASE_URL`);
    }
    const init = run(path.join(binDir, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], { asPostgres: isRoot });
    if (init.status !== 0) throw new Error(`initdb failed: ${init.stdout}${init.stderr}`);
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      appendFileSync(path.join(data, 'postgresql.conf'), [
        '', '# chat-gateway fault-injection run',
        "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${dir}'`,
        'fsync = off', 'synchronous_commit = off', 'full_page_writes = off',
        'shared_buffers = 32MB', 'max_connections = 200', `port = ${port}`, '',
      ].join('\n'));
      const start = run(pgctl, ['-D', data, '-l', logFile, '-w', '-t', '30', 'start'], { asPostgres: isRoot });
      if (start.status === 0) {
        cluster.url = `postgres://postgres@127.0.0.1:${port}/postgres`;
        break;
      }
      if (attempt >= 5 || !/could not bind/.test(cluster.serverLog())) {
        throw new Error(`pg_ctl start failed: ${start.stdout}${start.stderr}\n--- server log ---\n${cluster.serverLog()}`);
      }
    }
    const err = waitReady(psql, cluster.url, 30_000);
    if (err !== null) throw new Error(`the throwaway Postgres does not accept connections: ${err}\n${cluster.serverLog()}`);
    psqlRows(psql, cluster.url, 'CREATE DATABASE chat_fault');
    cluster.url = withDatabase(cluster.url, 'chat_fault');
    cluster.query = (sql) => psqlRows(psql, cluster.url, sql);
    log(`postgres: throwaway cluster in ${dir} (${binDir})`);
    return cluster;
  } catch (e) {
    cluster.stop();
    throw e;
  }
}
