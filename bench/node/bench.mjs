// Node Agenda 6.2.6's side of bench/: the same workloads as bench/ours.py, run by the published
// packages. bench/node.py copies this file beside its npm-installed packages and runs
//
//   node bench.mjs '<json spec>'
//
// spec: {"mode", "store": "postgres" | "redis", "url", "table" | "prefix", "channel", "jobs",
// "concurrency", "gap"}; the last stdout line is one JSON object. Times are CLOCK_MONOTONIC
// seconds (process.hrtime), the clock Python's time.monotonic() reads, so a worker here and a
// producer there (or the reverse) can be compared.
//
//   drain     enqueue `jobs` no-op jobs with `concurrency` concurrent producers, then start and
//             time until the last handler ran: {"enqueue": jobs/s, "drain": jobs/s}
//   enqueue   `jobs` sequential awaits of now(): {"calls": [seconds per call], "total": seconds}
//   worker    an idle worker; prints {"ready": true}, then waits for `jobs` probes and prints
//             {"started": {i: seconds}}
//   producer  `jobs` probes, `gap` ms apart: {"sent": [seconds]}
import { Agenda } from 'agenda';
import { PostgresBackend } from '@agendajs/postgres-backend';
import { RedisBackend } from '@agendajs/redis-backend';

const spec = JSON.parse(process.argv[2]);
const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const print = value => process.stdout.write(`${JSON.stringify(value)}\n`);

function backend() {
  if (spec.store === 'postgres') {
    return new PostgresBackend({
      connectionString: spec.url, tableName: spec.table, logTableName: `${spec.table}_log`,
      channelName: spec.channel,
    });
  }
  return new RedisBackend({ connectionString: spec.url, keyPrefix: spec.prefix, channelName: spec.channel });
}

async function open() {
  const agenda = new Agenda({
    backend: backend(), processEvery: 1000,
    maxConcurrency: spec.concurrency ?? 50, defaultConcurrency: spec.concurrency ?? 50,
  });
  agenda.on('error', error => process.stderr.write(`agenda error: ${error?.message ?? error}\n`));
  await agenda.ready;
  return agenda;
}

async function drain() {
  const agenda = await open();
  let done = 0;
  let finished;
  const all = new Promise(resolve => { finished = resolve; });
  agenda.define('noop', async () => { done += 1; if (done === spec.jobs) finished(); },
    { concurrency: spec.concurrency });
  let next = 0;
  const producer = async () => { while (next < spec.jobs) await agenda.now('noop', { i: next++ }); };
  let started = now();
  await Promise.all(Array.from({ length: spec.concurrency }, producer));
  const enqueue = spec.jobs / (now() - started);
  started = now();
  await agenda.start();
  await all;
  const rate = spec.jobs / (now() - started);
  await agenda.stop();
  return { enqueue, drain: rate };
}

// A producer is started with no definitions: Agenda connects its notification channel (and so
// publishes a new job) only once started; with nothing defined it runs nothing.
async function enqueue() {
  const agenda = await open();
  await agenda.start();
  const calls = [];
  const started = now();
  for (let i = 0; i < spec.jobs; i++) {
    const before = now();
    await agenda.now('noop', { i });
    calls.push(now() - before);
  }
  const total = now() - started;
  await agenda.stop();
  return { calls, total };
}

async function worker() {
  const agenda = await open();
  const started = {};
  let count = 0;
  let finished;
  const all = new Promise(resolve => { finished = resolve; });
  agenda.define('probe', async job => {
    started[job.attrs.data.i] = now();
    count += 1;
    if (count === spec.jobs) finished();
  });
  await agenda.start();
  await sleep(1500); // past the first poll: the worker is idle
  print({ ready: true });
  await all;
  await agenda.stop();
  return { started };
}

async function producer() {
  const agenda = await open();
  await agenda.start();
  const sent = [];
  for (let i = 0; i < spec.jobs; i++) {
    await sleep(spec.gap);
    sent.push(now());
    await agenda.now('probe', { i });
  }
  await agenda.stop();
  return { sent };
}

const modes = { drain, enqueue, worker, producer };
print(await modes[spec.mode]());
process.exit(0);
