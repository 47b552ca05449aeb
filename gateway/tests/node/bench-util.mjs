// Helpers shared by the benchmarks (bench-memory.mjs, bench-polling.mjs): reading a server
// process's resources from /proc, and client child processes that keep client memory and CPU
// out of the server's figures. Kept apart from harness.mjs, which the tests use.
import { fork, execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A non-negative number from the environment, or `dflt` when unset. */
export function envNum(name, dflt) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${v}`);
  return n;
}

/** `git rev-parse` and dirtiness of the checkout, for a result's provenance. */
export function gitRevision() {
  return {
    commit: sh('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']),
    dirty: sh('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no']) !== '',
  };
}

/** VmRSS (KiB), thread count and open descriptors of `pid`. */
export function procStatus(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1]);
  let fds = NaN;
  try { fds = readdirSync(`/proc/${pid}/fd`).length; } catch { /* not ours */ }
  return { rssKiB: field('VmRSS'), threads: field('Threads'), fds };
}

/** This process's soft limit on open files. */
export function softFdLimit() {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/** A command's trimmed output, or `?` when it fails (machine notes only). */
export function sh(cmd, args) {
  try { return execFileSync(cmd, args, { encoding: 'utf8' }).trim(); } catch { return '?'; }
}
/**
 * Forks `script --clients` as a client process for the benchmarks (keeping client memory and CPU
 * out of the gateway's figures) and returns `{child, request(msg), kill()}` once it says ready.
 */
export function forkClients(script) {
  const child = fork(script, ['--clients'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const cl = { child };
  cl.request = (msg) => new Promise((resolve, reject) => {
    const onExit = (code, signal) => reject(new Error(`client process exited (code ${code}, signal ${signal})`));
    child.once('exit', onExit);
    child.once('message', (reply) => { child.off('exit', onExit); resolve(reply); });
    child.send(msg);
  });
  cl.kill = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve(cl));
    child.once('exit', (code) => reject(new Error(`client process exited early (code ${code})`)));
  });
}
