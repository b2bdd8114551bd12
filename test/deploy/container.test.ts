// deploy/container/Dockerfile without a container runtime: the file is linted (dockerfile-utils, the
// checker behind VS Code's Docker support), then its own instructions are carried out as a script
// in a scratch directory — the build stage's COPY and RUN steps (the apt-get step needs root and a
// Debian image; the tools it installs must be present instead), then the runtime stage's COPYs,
// ENV and ENTRYPOINT — and the result must serve a model, answer /health, and drain and exit 0 on
// SIGTERM, as the pod would. Needs the npm registry (or its cache) for `npm ci`, as CI has.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { makeModel } from '../../src/model/make-model.js';

const DOCKERFILE = join('deploy', 'container', 'Dockerfile');
const ROOT = resolve('.');

interface Stage {
  name: string;
  instructions: Instruction[];
}

function stages(text: string): Stage[] {
  const out: Stage[] = [];
  for (const inst of DockerfileParser.parse(text).getInstructions()) {
    if (inst.getKeyword() === 'FROM') {
      const args = inst.getArguments().map((a) => a.getValue());
      out.push({ name: args[2] ?? String(out.length), instructions: [] });
    } else out.at(-1)!.instructions.push(inst);
  }
  return out;
}

const missingTools = ['python3', 'make', 'g++'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);

describe('deploy/container/Dockerfile', () => {
  const text = readFileSync(DOCKERFILE, 'utf8');
  const [build, runtime] = stages(text);

  it('lints clean and has a build stage and an unprivileged runtime stage', () => {
    assert.deepEqual(validate(text), []);
    assert.equal(build?.name, 'build');
    assert.ok(runtime);
    const user = runtime.instructions.filter((i) => i.getKeyword() === 'USER').at(-1);
    assert.ok(user && !['root', '0'].includes(user.getArguments()[0]!.getValue()), 'the runtime stage ends as a non-root user');
    assert.equal(runtime.instructions.find((i) => i.getKeyword() === 'STOPSIGNAL')?.getArguments()[0]?.getValue(), 'SIGTERM');
  });

  describe('its steps, run as a script', { skip: missingTools.length > 0 ? `missing build tools: ${missingTools.join(', ')}` : false, timeout: 600_000 }, () => {
    let dir: string;
    let server: ChildProcess | undefined;
    let stderr = '';
    let port = 0;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'stepwise-container-'));
      const roots: Record<string, string> = { build: join(dir, 'build'), runtime: join(dir, 'runtime') };
      const run = (stage: Stage, root: string) => {
        let workdir = root;
        const env: Record<string, string> = {};
        for (const inst of stage.instructions) {
          const args = inst.getArguments().map((a) => a.getValue());
          switch (inst.getKeyword()) {
            case 'WORKDIR':
              workdir = join(root, args[0]!);
              mkdirSync(workdir, { recursive: true });
              break;
            case 'ENV':
              for (const a of args) env[a.slice(0, a.indexOf('='))] = a.slice(a.indexOf('=') + 1);
              break;
            case 'COPY': {
              const from = (inst as unknown as { getFlags(): Array<{ getName(): string; getValue(): string }> }).getFlags().find((f) => f.getName() === 'from')?.getValue();
              const rawDest = args.at(-1)!;
              const dest = resolve(workdir, rawDest);
              for (const src of args.slice(0, -1)) {
                const path = from ? join(roots[from]!, src) : join(ROOT, src);
                const target = rawDest.endsWith('/') || args.length > 2 ? join(dest, src.split('/').at(-1)!) : dest;
                cpSync(path, target, { recursive: true });
              }
              break;
            }
            case 'RUN': {
              const cmd = inst.getArgumentsContent()!;
              if (cmd.startsWith('apt-get')) break; // needs root in a Debian image; its tools are checked above
              const r = spawnSync('sh', ['-c', cmd], { cwd: workdir, env: { ...process.env, ...env }, encoding: 'utf8' });
              assert.equal(r.status, 0, `RUN ${cmd} failed:\n${r.stdout}\n${r.stderr}`);
              break;
            }
          }
        }
        return { workdir, env };
      };
      run(build!, roots.build!);
      const rt = run(runtime!, roots.runtime!);
      const model = join(dir, 'tiny.gguf');
      await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: model });
      const entry = runtime!.instructions.find((i) => i.getKeyword() === 'ENTRYPOINT')!;
      const argv = (JSON.parse(entry.getArgumentsContent()!) as string[]).map((a) => (a.startsWith('/') ? join(roots.runtime!, a) : a));
      port = 20000 + Math.floor(Math.random() * 20000);
      server = spawn(argv[0]!, argv.slice(1), {
        cwd: rt.workdir,
        env: { ...process.env, ...rt.env, STEPWISE_MODEL: model, PORT: String(port), STEPWISE_DRAIN_TIMEOUT: '5' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      server.stderr!.on('data', (d) => (stderr += String(d)));
      const deadline = Date.now() + 60_000;
      while (!stderr.includes('serving')) {
        if (Date.now() > deadline || server.exitCode !== null) throw new Error(`the server did not start:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
    after(() => {
      server?.kill('SIGKILL');
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('builds the native kernels and the JavaScript into the image', () => {
      const app = join(dir, 'runtime', 'app');
      assert.ok(existsSync(join(app, 'build', 'Release', 'stepwise_kernels_generic.node')));
      assert.ok(existsSync(join(app, 'dist', 'src', 'cli', 'main.js')));
      assert.ok(!existsSync(join(app, 'node_modules', 'typescript')), 'no development tools in the image');
    });

    it('serves the mounted model, then drains and exits 0 on SIGTERM', async () => {
      const base = `http://127.0.0.1:${port}`;
      assert.equal((await fetch(`${base}/health`)).status, 200);
      const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Hello', max_tokens: 3 }) });
      assert.equal(r.status, 200);
      assert.match(stderr, /kernels: native/);
      const exited = new Promise<number | null>((res) => server!.on('exit', (code) => res(code)));
      server!.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
      assert.match(stderr, /draining/);
    });
  });
});
