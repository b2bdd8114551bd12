// Progress while a benchmark runs, on stderr so stdout stays the report. A cli-progress bar on a
// terminal; one line per stage otherwise (logs, CI), never a stream of redraws.
import { createRequire } from 'node:module';

interface CliBar {
  start(total: number, value: number, payload?: Record<string, unknown>): void;
  update(value: number, payload?: Record<string, unknown>): void;
  stop(): void;
}
interface CliProgressModule {
  SingleBar: new (opts: Record<string, unknown>, preset?: unknown) => CliBar;
  Presets: Record<string, unknown>;
}

export interface Progress {
  /** A new stage (one policy's run) of `total` requests. */
  stage(label: string, total: number): void;
  tick(): void;
  /** Ends the current stage with a summary line. */
  done(summary: string): void;
  note(line: string): void;
}

export function createProgress(enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!enabled) return { stage() {}, tick() {}, done() {}, note() {} };
  if (!stream.isTTY) {
    return {
      stage: (label, total) => stream.write(`bench: ${label}: ${total} requests...\n`),
      tick() {},
      done: (summary) => stream.write(`bench:   ${summary}\n`),
      note: (line) => stream.write(`bench: ${line}\n`),
    };
  }
  const cp = createRequire(import.meta.url)('cli-progress') as CliProgressModule;
  let bar: CliBar | undefined;
  let value = 0;
  return {
    stage(label, total) {
      bar?.stop();
      value = 0;
      bar = new cp.SingleBar(
        { stream, format: `${label.padEnd(22)} [{bar}] {value}/{total} requests | {duration_formatted} elapsed`, hideCursor: true, clearOnComplete: true, fps: 5 },
        cp.Presets.shades_classic,
      );
      bar.start(total, 0);
    },
    tick() {
      bar?.update(++value);
    },
    done(summary) {
      bar?.stop();
      bar = undefined;
      stream.write(`${summary}\n`);
    },
    note(line) {
      stream.write(`${line}\n`);
    },
  };
}
