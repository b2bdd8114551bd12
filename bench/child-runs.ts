// Running each item of a speed benchmark (a policy, a router) in a process of its own, so that a run
// leaving a large heap behind does not slow the next one down: the parent re-runs its own script with
// `--<listFlag> ITEM --child`, and the child prints its table row as one JSON line.
import { spawnSync } from 'node:child_process';

/** What a timed simulation run reports, as both speed benchmarks read it. */
interface TimedRun {
  sim: { wallMs: number };
  numSteps: number | null;
  metrics: { completed: number; durationS: number; outputThroughput: number };
}

/**
 * The speed columns both benchmarks print after their label: requests, steps, simulation seconds,
 * seconds with metrics, requests/s, steps/s, virtual seconds (to `virtualDigits`), virtual tok/s.
 */
export function speedColumns(r: TimedRun, numRequests: number, totalMs: number, virtualDigits: number): string[] {
  const simMs = r.sim.wallMs;
  return [
    String(r.metrics.completed),
    String(r.numSteps),
    (simMs / 1000).toFixed(2),
    (totalMs / 1000).toFixed(2),
    ((numRequests / simMs) * 1000).toFixed(0),
    ((r.numSteps! / simMs) * 1000).toFixed(0),
    r.metrics.durationS.toFixed(virtualDigits),
    r.metrics.outputThroughput.toFixed(0),
  ];
}

/** In the child: hands the row to the parent and ends the process. */
export function reportRow(row: string[]): never {
  process.stdout.write(JSON.stringify(row) + '\n');
  process.exit(0);
}

/**
 * In the parent: runs `script` once per item, with the item as the only value of `--<listFlag>`, and
 * returns the rows the children reported. `progress` names the benchmark in the stderr lines, which
 * show column `timeColumn` of each row as it arrives.
 */
export function rowsFromChildren(script: string, listFlag: string, items: readonly string[], progress: string, timeColumn: number): string[][] {
  const flag = `--${listFlag}`;
  const args = process.argv.slice(2).filter((a, i, all) => a !== flag && all[i - 1] !== flag);
  const rows: string[][] = [];
  for (const item of items) {
    const child = spawnSync(process.execPath, [...process.execArgv, script, ...args, flag, item, '--child'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (child.status !== 0) throw new Error(`the ${item} run failed (exit ${child.status})`);
    rows.push(JSON.parse(child.stdout.trim().split('\n').pop()!));
    process.stderr.write(`${progress}: ${item}: ${rows[rows.length - 1][timeColumn]} s\n`);
  }
  return rows;
}
