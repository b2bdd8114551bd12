// `stepwise serve --model FILE`: the OpenAI-compatible HTTP server. SIGTERM/SIGINT drain gracefully:
// stop accepting, let in-flight requests finish (up to --drain-timeout), then exit 0.
import { existsSync } from 'node:fs';
import { LLM } from '../llm.js';
import { buildServer, DEFAULT_BODY_LIMIT } from '../server/app.js';
import { ENGINE_FLAG_OPTIONS, ENGINE_FLAGS_HELP, engineOptionsFromFlags, parseBytes, parseIntFlag } from './engine-flags.js';
import { parseCommandFlags } from './command-flags.js';
import { UsageError } from './usage-error.js';
import { TOOL_CALL_PARSERS } from '../server/tools/tool-parsers.js';

const HELP = `Usage: stepwise serve --model FILE [options]

  --model FILE               GGUF file or llama2.c checkpoint (.bin)
  --host HOST                address to listen on (default 127.0.0.1)
  --port N                   port (default 8000; 0 picks a free one)
  --api-key KEY              require "Authorization: Bearer KEY" on /v1/* (default: env STEPWISE_API_KEY)
  --served-model-name NAME   model name in the API (default: the file's basename)
  --body-limit BYTES         largest request body (default 1M); larger ones get 413
  --drain-timeout SECONDS    on SIGTERM/SIGINT, wait this long for in-flight requests (default 30)
  --log-level LEVEL          fatal|error|warn|info|debug (default warn; info logs every request)
  --tool-call-parser NAME    how chat answers are read for tool calls: hermes, llama3_json or mistral
                             (default: chosen from the chat template's markers)

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health,
GET /metrics (Prometheus, vLLM names), GET / (live view of the batch).

${ENGINE_FLAGS_HELP}`;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug'];

export async function runServe(argv: string[]): Promise<number> {
  const values = parseCommandFlags(argv, {
    ...ENGINE_FLAG_OPTIONS,
    model: { type: 'string', short: 'm' },
    host: { type: 'string' },
    port: { type: 'string' },
    'api-key': { type: 'string' },
    'served-model-name': { type: 'string' },
    'body-limit': { type: 'string' },
    'drain-timeout': { type: 'string' },
    'log-level': { type: 'string' },
    'tool-call-parser': { type: 'string' },
  }, HELP, process.stdout);
  if (!values) return 0;
  if (!values.model) throw new UsageError(`--model is required\n\n${HELP}`);
  if (!existsSync(values.model)) throw new UsageError(`--model: no such file '${values.model}'`);
  const host = values.host ?? '127.0.0.1';
  const port = values.port === undefined ? 8000 : parseIntFlag('port', values.port, 0);
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const bodyLimit = values['body-limit'] === undefined ? DEFAULT_BODY_LIMIT : parseBytes('body-limit', values['body-limit']);
  const drainTimeoutS = values['drain-timeout'] === undefined ? 30 : parseIntFlag('drain-timeout', values['drain-timeout'], 0);
  const logLevel = values['log-level'] ?? 'warn';
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${logLevel}'`);
  const apiKey = values['api-key'] ?? (process.env.STEPWISE_API_KEY || undefined);
  const toolCallParser = values['tool-call-parser'];
  if (toolCallParser !== undefined && !(toolCallParser in TOOL_CALL_PARSERS)) {
    throw new UsageError(`--tool-call-parser must be one of ${Object.keys(TOOL_CALL_PARSERS).join(', ')}, got '${toolCallParser}'`);
  }
  const loadOptions = engineOptionsFromFlags(values);

  const llm = await LLM.load(values.model, loadOptions);
  // One step before listening: /health answers 200 only once the engine has run (a readiness probe
  // then means "model loaded and stepping"), and the first request does not pay the warm-up.
  await llm.generate([llm.tokenizer?.bosId ?? 0], { maxTokens: 1, temperature: 0 });
  const app = await buildServer(llm, { apiKey, modelName: values['served-model-name'], bodyLimit, logger: { level: logLevel }, toolCallParser });
  try {
    await app.listen({ host, port });
  } catch (e) {
    await llm.close();
    throw e;
  }
  const address = app.server.address();
  const bound = typeof address === 'object' && address ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : String(address);
  const o = llm.options;
  process.stderr.write(
    `stepwise: serving ${app.stepwise.context.modelName} on ${bound} (kernels: ${llm.backend}; policy ${o.policy}, ` +
      `max-num-seqs ${o.maxNumSeqs}, max-num-batched-tokens ${o.maxNumBatchedTokens}, ${o.numBlocks} KV blocks x ${o.blockSize}, ` +
      `max-model-len ${o.maxModelLen}${apiKey ? ', API key required' : ''})\n`,
  );

  // Resolve with the exit code once a signal has drained the server.
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        // A second signal: stop waiting for in-flight requests.
        process.stderr.write(`stepwise: ${signal} again, aborting in-flight requests\n`);
        for (const g of app.stepwise.context.active) g.abort();
        return;
      }
      stopping = true;
      const inFlight = app.stepwise.activeRequests();
      process.stderr.write(`stepwise: ${signal}: draining ${inFlight} in-flight request(s) (timeout ${drainTimeoutS}s)\n`);
      void (async () => {
        let code = 0;
        try {
          const { aborted } = await app.stepwise.drainAndClose(drainTimeoutS * 1000);
          if (aborted > 0) process.stderr.write(`stepwise: drain timeout: aborted ${aborted} request(s)\n`);
          await llm.close();
          process.stderr.write('stepwise: stopped\n');
        } catch (e) {
          process.stderr.write(`stepwise: error while stopping: ${(e as Error).message}\n`);
          code = 1;
        }
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        resolve(code);
      })();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
