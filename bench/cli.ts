// Entry point: node --import tsx bench/cli.ts SCENARIO [options] (see --help).
import { parseCommandLine, toOptions, USAGE } from './lib/options.ts';
import { runScenario } from './lib/run.ts';
import { SCENARIOS } from './scenarios/index.ts';
import { runMuc } from './scenarios/muc.ts';

const { positionals, values } = parseCommandLine(process.argv.slice(2));
const name = positionals[0];
if (values.help || !name || (!SCENARIOS[name] && name !== 'muc')) {
  console.error(USAGE);
  process.exit(values.help ? 0 : 2);
}
try {
  if (name === 'muc') {
    // One room per --muc-sizes entry, on the running target (its accounts must exist).
    const o = toOptions(values, name);
    for (const n of o.mucSizes) if ((await runMuc(o, n, o.ports.length ? o.ports : [o.port])).summary.incomplete) process.exitCode = 1;
    process.exit();
  }
  const result = await runScenario(name, SCENARIOS[name], toOptions(values, name));
  process.exitCode = result.summary.failed ? 1 : 0;
} catch (e) {
  console.error((e as Error).message);
  process.exitCode = 1;
}
