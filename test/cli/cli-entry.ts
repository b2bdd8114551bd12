// Runs the CLI from source the way bin/stepwise.js runs it from dist/ (tests spawn this under tsx).
import { main } from '../../src/cli/main.js';
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
