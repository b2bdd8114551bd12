// `stepwise simulate --replicas N`: the fleet under each router asked for, printed as the router,
// balance and benchmark tables, and written as results.json and a report like a lone engine's run.
import { writeRunOutputs } from './run-outputs.js';
import type { FleetFlags } from './fleet-flags.js';
import { latencyTable, throughputTable } from '../runs/tables.js';
import type { WorkloadSpec } from '../runs/workload.js';
import type { HardwareProfile, ModelProfile } from '../sim/cost-model.js';
import type { SimLoadOptions } from '../sim/engine-options.js';
import { balanceTable, fleetResultsJson, fleetSummary, fleetTable, replicaTable, writeFleetReport } from '../sim/fleet-report.js';
import { runFleetSimulation } from '../sim/run-fleet.js';

export interface FleetCommand {
  hwName: string;
  hw: HardwareProfile;
  modelName: string;
  model: ModelProfile;
  workload: WorkloadSpec;
  load: SimLoadOptions;
  fleet: FleetFlags;
  outputs: { out?: string; json?: string };
}

type Sink = { write(s: string): unknown };

export async function runFleetCommand(c: FleetCommand, out: Sink, err: Sink): Promise<number> {
  const results = runFleetSimulation({
    hardwareName: c.hwName,
    hardware: c.hw,
    modelName: c.modelName,
    model: c.model,
    workload: c.workload,
    load: c.load,
    replicas: c.fleet.replicas,
    routers: c.fleet.routers,
    routerOptions: c.fleet.routerOptions,
    slo: c.fleet.slo,
    onRun: (run) => {
      const m = run.metrics;
      err.write(
        `simulate: ${run.label} x${c.fleet.replicas}: ${m.completed} requests in ${m.durationS.toFixed(2)} s virtual ` +
          `(${(run.sim.wallMs / 1000).toFixed(2)} s to simulate), ${m.outputThroughput.toFixed(1)} output tok/s\n`,
      );
    },
  });

  out.write(`\n${fleetSummary(results).join('\n')}\n`);
  out.write(`workload: ${results.workload.description}, seed ${results.workload.seed}\n\n`);
  out.write(fleetTable(results, 'text') + '\n\n');
  out.write(balanceTable(results, 'text') + '\n\n');
  if (c.fleet.perReplica) out.write(replicaTable(results, 'text') + '\n\n');
  out.write(throughputTable(results, 'text') + '\n\n');
  out.write(latencyTable(results, 'text') + '\n');
  const failures = results.runs.flatMap((r) => r.records.filter((x) => !x.success).map((x) => `${r.label}: request ${x.index}: ${x.error}`));
  if (failures.length > 0) err.write(`\n${failures.length} requests refused, first: ${failures[0]}\n`);
  await writeRunOutputs(c.outputs, out, { writeReport: (dir) => writeFleetReport(results, dir, c.fleet.perReplica), resultsJson: () => fleetResultsJson(results) });
  return failures.length > 0 ? 1 : 0;
}
