// BullMQ's rows of pgq's benchmarks/compare.py. Prints one JSON line.
//
//   node bench.mjs drain   --port P --jobs N --concurrency C
//   node bench.mjs latency --port P --count 200 --interval-ms 20
//
// drain: N no-op jobs added with addBulk (1,000 per call, not timed), then one Worker at
// concurrency C: the rate runs from the first handler start to the last 'completed' event (fired
// once the job's completion is written to Redis). Completed jobs are kept, as BullMQ ships.
// latency: one job every interval onto an idle Worker in this process, from Queue.add's return to
// the handler's start (process.hrtime, one monotonic clock).
import { Queue, Worker } from "bullmq";

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
}

const mode = process.argv[2];
const connection = { host: "127.0.0.1", port: option("port", 6379), maxRetriesPerRequest: null };
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function drain() {
  const jobs = option("jobs", 10000);
  const concurrency = option("concurrency", 100);
  const queue = new Queue("bench", { connection });
  for (let offset = 0; offset < jobs; offset += 1000) {
    const batch = [];
    for (let i = offset; i < Math.min(offset + 1000, jobs); i++) batch.push({ name: "noop", data: { i } });
    await queue.addBulk(batch);
  }
  let first = null;
  let last = null;
  let completed = 0;
  let failed = 0;
  const finished = new Promise((resolve) => {
    const worker = new Worker(
      "bench",
      async () => {
        if (first === null) first = nowMs();
      },
      { connection, concurrency, autorun: false },
    );
    worker.on("completed", () => {
      completed += 1;
      if (completed + failed === jobs) {
        last = nowMs();
        resolve(worker);
      }
    });
    worker.on("failed", () => {
      failed += 1;
      if (completed + failed === jobs) resolve(worker);
    });
    worker.run();
  });
  const timeout = sleep(Math.max(120000, jobs * 5)).then(() => null);
  const worker = await Promise.race([finished, timeout]);
  const seconds = first !== null && last !== null ? (last - first) / 1000 : null;
  console.log(JSON.stringify({ jobs, completed, failed, jobs_per_s: seconds ? completed / seconds : null }));
  if (worker) await worker.close();
  await queue.close();
}

async function latency() {
  const count = option("count", 200);
  const interval = option("interval-ms", 20);
  const queue = new Queue("ping", { connection });
  const started = new Map();
  const worker = new Worker(
    "ping",
    async (job) => {
      started.set(job.id, nowMs());
    },
    { connection, concurrency: 10 },
  );
  await worker.waitUntilReady();
  // Untimed jobs first, as every contender of compare.py runs (cmp/common.py LATENCY_WARM_UP).
  const warmUp = option("warm-up", 10);
  for (let n = 0; n < warmUp; n++) {
    await queue.add("ping", {});
    await sleep(interval);
  }
  await sleep(500);
  const committed = new Map();
  for (let n = 0; n < count; n++) {
    const job = await queue.add("ping", {});
    committed.set(job.id, nowMs());
    await sleep(interval);
  }
  const deadline = nowMs() + 30000;
  while (started.size < count + warmUp && nowMs() < deadline) await sleep(10);
  const lags = [];
  for (const [id, at] of committed) if (started.has(id)) lags.push(started.get(id) - at);
  console.log(JSON.stringify({ lags_ms: lags }));
  await worker.close();
  await queue.close();
}

await (mode === "drain" ? drain() : latency());
process.exit(0);
