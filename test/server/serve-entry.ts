// Runs the CLI under tsx for tests that need a real `stepwise serve` process (signals, exit codes).
import { main } from '../../src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
