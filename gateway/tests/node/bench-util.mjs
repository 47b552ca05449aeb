// Helpers shared by the benchmarks (bench-memory.mjs, bench-polling.mjs): reading a server
// process's resources from /proc, and client child processes that keep client memory and CPU
// out of the server's figures. Kept apart from harness.mjs, which the tests use.
import { fork, execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

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
