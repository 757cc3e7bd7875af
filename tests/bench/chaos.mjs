// chaos.mjs — the long chaos run (issue 16): tests/integration/chaoslib.mjs's writers and kills for --rounds rounds
// (1,000 by default), every acknowledged write checked after each round, the figures printed. Run through
// tests/bench/chaos; build/partyd, or $PARTYD_BIN, or --bin.
//
//   tests/bench/chaos [--rounds 1000] [--seed 1] [--shard-share 0.5] [--early-share 0.2] [--held-share 0.25]
//                     [--max-delay-ms 400] [--max-spin-us 2000] [--full-every 25] [--writers 2] [--bin PATH] [--keep]
//
// A progress line (JSON) to stderr every 50 rounds; the summary, one JSON line, on stdout: rounds, kills by kind
// (tree, early: a tree killed again while starting, shard, held: with the WAL syncs held), acknowledged writes by
// kind, attempted and unacked writes, lost (must be 0), writes present without an acknowledgement, problems (must
// be 0), restart times (kill → /health 200 for the whole tree; kill → the shard up again for one shard, and the
// supervisor's backoff in that), p50/p99/max.
// Exit status: 0 nothing lost and no problem; 1 otherwise (the problems are printed to stderr).
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Chaos } from '../integration/chaoslib.mjs';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '1' },
    'shard-share': { type: 'string', default: '0.5' },
    'early-share': { type: 'string', default: '0.2' },
    'held-share': { type: 'string', default: '0.25' },
    'max-spin-us': { type: 'string', default: '2000' },
    'max-delay-ms': { type: 'string', default: '400' },
    'full-every': { type: 'string', default: '25' },
    writers: { type: 'string', default: '2' },
    bin: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});

const started = new Date().toISOString();
const chaos = new Chaos({
  rounds: Number(opt.rounds),
  seed: Number(opt.seed),
  shardShare: Number(opt['shard-share']),
  earlyShare: Number(opt['early-share']),
  heldShare: Number(opt['held-share']),
  maxSpinUs: Number(opt['max-spin-us']),
  maxDelayMs: Number(opt['max-delay-ms']),
  fullEvery: Number(opt['full-every']),
  writers: Number(opt.writers),
  bin: opt.bin && path.resolve(opt.bin),
  keep: opt.keep,
  log: (s) => process.stderr.write(`${JSON.stringify({ progress: s.rounds, lost: s.lost, problems: s.problems, acked: s.acked.total, elapsed_s: s.elapsed_s })}\n`),
  logEvery: 50,
});
let failed = null;
try {
  await chaos.run();
} catch (e) {
  failed = e; // a node that would not start, a sanitizer report, a check that could not read: the figures so far
}
const summary = chaos.summary();
console.log(JSON.stringify({ ...summary, started, cpus: os.cpus().length, bin: opt.bin ?? process.env.PARTYD_BIN ?? 'build/partyd' }));
if (opt.keep || failed) console.error(`data in ${chaos.dir}`);
if (failed) console.error(failed.stack);
if (failed || summary.lost || chaos.problems.length) {
  console.error(chaos.problems.join('\n'));
  process.exit(1);
}
