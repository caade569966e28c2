// A real Node Agenda 6.2.6 process that the Python interop tests drive: one JSON request per
// line on stdin, one JSON reply per line on stdout ({"id", "ok", "result" | "error"}), and one
// line per job event ({"event": "start" | "success" | "fail" | "complete", "jobId", "jobName",
// "data", "at", "failCount", ...}; "complete" comes once the run's end write is stored).
//
//   {"id": 1, "op": "connect", "store": "postgres", "url": "...", "table": "...", "channel": "..."}
//   {"id": 2, "op": "define", "name": "work", "behaviour": "ok" | "fail" | "sleep" | "touch",
//    "ms": 100, "touches": 5}   (touch: `touches` times, sleep `ms`, then job.touch())
//   {"id": 3, "op": "start"}  /  {"op": "now", "name": "work", "data": {...}}  /  ...
//
// Nothing here imitates a layout: every store access goes through the published packages.
import { createInterface } from 'node:readline';
import { Agenda } from 'agenda';
import { PostgresBackend } from '@agendajs/postgres-backend';
import { RedisBackend } from '@agendajs/redis-backend';

let agenda = null;
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const write = message => process.stdout.write(`${JSON.stringify(message)}\n`);

function backendOf(request) {
  if (request.store === 'postgres') {
    return new PostgresBackend({
      connectionString: request.url,
      tableName: request.table,
      logTableName: request.logTable,
      channelName: request.channel,
      disableNotifications: request.notifications === false,
    });
  }
  if (request.store === 'redis') {
    return new RedisBackend({
      connectionString: request.url,
      keyPrefix: request.prefix,
      channelName: request.channel,
    });
  }
  if (request.store === 'mongo') {
    // imported only when asked: the Mongo scenarios run only where a server URL is given
    return import('@agendajs/mongo-backend').then(({ MongoBackend }) =>
      new MongoBackend({ address: request.url, collection: request.collection }));
  }
  throw new Error(`unknown store ${request.store}`);
}

function attrsOf(job) {
  const attrs = job?.attrs ?? job;
  return attrs && JSON.parse(JSON.stringify({ ...attrs, id: String(attrs._id ?? attrs.id) }));
}

function report(event, job, extra = {}) {
  const attrs = job?.attrs ?? {};
  write({
    event, jobId: String(attrs._id), jobName: attrs.name, data: attrs.data ?? null,
    failCount: attrs.failCount ?? null, at: Date.now(), worker: 'node', ...extra,
  });
}

async function connect(request) {
  const backend = await backendOf(request);
  agenda = new Agenda({
    backend,
    name: request.name ?? 'node-agent',
    processEvery: request.processEvery ?? 500,
    maxConcurrency: request.maxConcurrency ?? 20,
    defaultConcurrency: request.defaultConcurrency ?? 5,
    defaultLockLifetime: request.lockLifetime ?? 600_000,
  });
  agenda.on('error', error => write({ event: 'error', error: String(error?.message ?? error) }));
  await agenda.ready;
  return { name: request.name ?? 'node-agent' };
}

function define(request) {
  const behaviour = request.behaviour ?? 'ok';
  agenda.define(request.name, async job => {
    report('start', job);
    if (behaviour === 'sleep') await sleep(request.ms ?? 100);
    if (behaviour === 'touch') {
      for (let i = 0; i < (request.touches ?? 5); i++) {
        await sleep(request.ms ?? 100);
        await job.touch();
      }
    }
    if (behaviour === 'fail') throw new Error(job.attrs.data?.message ?? request.message ?? 'boom from node');
  }, { concurrency: request.concurrency ?? 5, lockLifetime: request.lockLifetime });
  for (const kind of ['success', 'fail', 'complete']) {
    agenda.on(`${kind}:${request.name}`, (a, b, remote) => {
      if (kind === 'success' && b !== true) report('success', a);
      if (kind === 'fail' && remote !== true) report('fail', b, { error: String(a?.message ?? a) });
      // after the end write (Job.run emits success and fail before it, complete after)
      if (kind === 'complete' && b !== true) report('complete', a);
    });
  }
  return null;
}

const options = request => ({
  ...(request.options ?? {}),
  ...(request.options?.startDate ? { startDate: new Date(request.options.startDate) } : {}),
  ...(request.options?.endDate ? { endDate: new Date(request.options.endDate) } : {}),
});

async function uniqueSave(request) {
  let job = agenda.create(request.name, request.data).unique(request.unique, request.uniqueOpts);
  if (request.when) job = job.schedule(request.when);
  return attrsOf(await job.save());
}

async function createMany(request) {
  const ids = [];
  for (const item of request.items) {
    let job = agenda.create(request.name, item.data);
    if (item.priority !== undefined) job = job.priority(item.priority);
    if (item.when) job = job.schedule(new Date(item.when));
    ids.push(attrsOf(await job.save()).id);
  }
  return ids;
}

async function query(request) {
  const result = await agenda.queryJobs({ name: request.name, id: request.jobId, limit: request.limit ?? 100_000 });
  return result.jobs.map(attrsOf);
}

const operations = {
  connect,
  define,
  start: async () => { await agenda.start(); return null; },
  stop: async () => { await agenda.stop(); return null; },
  drain: async () => { await agenda.drain(); return null; },
  now: async r => attrsOf(await agenda.now(r.name, r.data)),
  schedule: async r => attrsOf(await agenda.schedule(r.when, r.name, r.data, options(r))),
  every: async r => attrsOf(await agenda.every(r.interval, r.name, r.data, options(r))),
  unique: uniqueSave,
  createMany,
  query,
  cancel: async r => agenda.cancel(r.criteria),
  exit: async () => { if (agenda) await agenda.stop(); setTimeout(() => process.exit(0), 10); return null; },
};

// The job log (Agenda 6.2's JobLogger), through the backend's own logger:
//   {"op": "enableLogging"}                     what `new Agenda({backend, logging: true})` sets
//   {"op": "getLogs", "query": {"jobName": "work", "level": ["error"], "from": "<ISO>"}}
//   {"op": "clearLogs", "query": {...}}         (no query: every entry)
const logQuery = request => {
  const query = { ...(request.query ?? {}) };
  if (query.from) query.from = new Date(query.from);
  if (query.to) query.to = new Date(query.to);
  return query;
};
Object.assign(operations, {
  enableLogging: async () => {
    // agenda/dist/index.js:101-104 (`logging: true`): the backend's logger, every job logged.
    agenda.jobLogger = agenda.backend.logger;
    agenda.loggingDefault = true;
    return null;
  },
  getLogs: async r => JSON.parse(JSON.stringify(await agenda.getLogs(logQuery(r)))),
  clearLogs: async r => agenda.clearLogs(r.query ? logQuery(r) : undefined),
});

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const request = JSON.parse(line);
  try {
    const operation = operations[request.op];
    if (!operation) throw new Error(`unknown op ${request.op}`);
    write({ id: request.id, ok: true, result: (await operation(request)) ?? null });
  } catch (error) {
    write({ id: request.id, ok: false, error: String(error?.stack ?? error) });
  }
}
if (agenda) await agenda.stop();
process.exit(0);
