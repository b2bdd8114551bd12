// The Kubernetes manifests in deploy/kubernetes, rendered as `kubectl apply -k` renders them (the
// kustomization lists resources only, so its output is those documents as written) and validated
// against upstream schemas without a cluster: core and RBAC objects with kubernetes-models (the
// Kubernetes OpenAPI schemas), Gateway and HTTPRoute with @kubernetes-models/gateway-api, the
// InferencePool and InferenceObjective with their CRDs' OpenAPI schemas (vendored in
// test/fixtures/crds). Then the wiring: the pool selects the model-server pods on their port, the
// route reaches the pool, the pool reaches the endpoint picker, and the pods drain within their
// grace period.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse, parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { Gateway, HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';

const DIR = join('deploy', 'kubernetes');

type Obj = { apiVersion: string; kind: string; metadata: { name: string }; spec?: any; data?: any };

function render(): Obj[] {
  const k = parse(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as Record<string, unknown>;
  // Anything beyond a resource list would transform the output, and this reading would be wrong.
  assert.deepEqual(Object.keys(k).sort(), ['apiVersion', 'kind', 'resources'], 'the kustomization only lists resources');
  return (k.resources as string[]).flatMap((f) =>
    parseAllDocuments(readFileSync(join(DIR, f), 'utf8')).map((d) => {
      assert.equal(d.errors.length, 0, `${f}: ${d.errors.join('; ')}`);
      return d.toJS() as Obj;
    }),
  );
}

/** A CRD's schema for one version, as the API server applies it. */
function crdValidator(file: string, version: string) {
  const crd = parse(readFileSync(join('test', 'fixtures', 'crds', file), 'utf8')) as {
    spec: { versions: Array<{ name: string; served: boolean; schema: { openAPIV3Schema: object } }> };
  };
  const v = crd.spec.versions.find((x) => x.name === version && x.served);
  assert.ok(v, `${file} serves ${version}`);
  // x-kubernetes-* keywords (CEL rules among them) are the API server's own; they are not checked here.
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  const validate = ajv.compile(v.schema.openAPIV3Schema);
  return (o: Obj) => {
    if (!validate(o)) throw new Error(ajv.errorsText(validate.errors));
  };
}

const VALIDATORS: Record<string, (o: Obj) => void> = {
  'apps/v1/Deployment': (o) => new Deployment(o as never).validate(),
  'v1/Service': (o) => new Service(o as never).validate(),
  'v1/ServiceAccount': (o) => new ServiceAccount(o as never).validate(),
  'v1/ConfigMap': (o) => new ConfigMap(o as never).validate(),
  'rbac.authorization.k8s.io/v1/Role': (o) => new Role(o as never).validate(),
  'rbac.authorization.k8s.io/v1/RoleBinding': (o) => new RoleBinding(o as never).validate(),
  'gateway.networking.k8s.io/v1/Gateway': (o) => new Gateway(o as never).validate(),
  'gateway.networking.k8s.io/v1/HTTPRoute': (o) => new HTTPRoute(o as never).validate(),
  'inference.networking.k8s.io/v1/InferencePool': crdValidator('inference.networking.k8s.io_inferencepools.yaml', 'v1'),
  'llm-d.ai/v1alpha2/InferenceObjective': crdValidator('llm-d.ai_inferenceobjectives.yaml', 'v1alpha2'),
};

const keyOf = (o: Obj) => `${o.apiVersion}/${o.kind}`;

describe('deploy/kubernetes', () => {
  const objects = render();
  const find = (kind: string, name: string) => {
    const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
    assert.ok(o, `${kind} ${name} exists`);
    return o;
  };

  it('holds only objects valid against the upstream schemas', () => {
    assert.ok(objects.length >= 10);
    for (const o of objects) {
      const validate = VALIDATORS[keyOf(o)];
      assert.ok(validate, `no schema for ${keyOf(o)}`);
      assert.doesNotThrow(() => validate(o), `${keyOf(o)} ${o.metadata.name}`);
    }
  });

  it('the schemas refuse a broken object (so passing them means something)', () => {
    const deployment = structuredClone(find('Deployment', 'stepwise'));
    deployment.spec.replicas = 'three';
    assert.throws(() => VALIDATORS[keyOf(deployment)]!(deployment), /replicas/);
    const pool = structuredClone(find('InferencePool', 'stepwise'));
    delete pool.spec.endpointPickerRef.port;
    pool.spec.targetPorts = [];
    assert.throws(() => VALIDATORS[keyOf(pool)]!(pool));
    const route = structuredClone(find('HTTPRoute', 'stepwise'));
    route.spec.rules[0].matches[0].path.type = 'Prefix';
    assert.throws(() => VALIDATORS[keyOf(route)]!(route));
  });

  it('wires the pool: pods on their port, the picker, the route, the objective', () => {
    const server = find('Deployment', 'stepwise');
    const pool = find('InferencePool', 'stepwise');
    const podLabels = server.spec.template.metadata.labels as Record<string, string>;
    for (const [k, v] of Object.entries(pool.spec.selector.matchLabels as Record<string, string>)) assert.equal(podLabels[k], v, `pool selects ${k}`);
    const container = server.spec.template.spec.containers[0];
    assert.deepEqual(pool.spec.targetPorts, [{ number: container.ports[0].containerPort }]);
    const epp = find('Service', pool.spec.endpointPickerRef.name);
    assert.ok(epp.spec.ports.some((p: { port: number }) => p.port === pool.spec.endpointPickerRef.port.number), 'the picker service has the port the pool names');
    const eppPods = find('Deployment', 'stepwise-epp');
    const args = eppPods.spec.template.spec.containers[0].args as string[];
    assert.equal(args[args.indexOf('--pool-name') + 1], pool.metadata.name);
    const route = find('HTTPRoute', 'stepwise');
    assert.deepEqual(route.spec.rules[0].backendRefs[0], { group: 'inference.networking.k8s.io', kind: 'InferencePool', name: pool.metadata.name });
    assert.equal(route.spec.parentRefs[0].name, find('Gateway', 'inference-gateway').metadata.name);
    assert.equal(find('InferenceObjective', 'stepwise-default').spec.poolRef.name, pool.metadata.name);
    // The picker scrapes the servers' Prometheus endpoint.
    assert.match(find('ConfigMap', 'stepwise-epp').data['default-plugins.yaml'], /path: "\/metrics"/);
  });

  it('probes /health, drains within the grace period, runs unprivileged, asks for the memory the model needs', () => {
    const server = find('Deployment', 'stepwise');
    const pod = server.spec.template.spec;
    const c = pod.containers[0];
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      assert.equal(c[probe].httpGet.path, '/health', probe);
      assert.equal(c[probe].httpGet.port, 'http', probe);
    }
    const env = Object.fromEntries((c.env as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]));
    const preStop = Number(c.lifecycle.preStop.exec.command[1]);
    assert.ok(pod.terminationGracePeriodSeconds >= preStop + Number(env.STEPWISE_DRAIN_TIMEOUT), 'grace period covers preStop + drain');
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(c.volumeMounts.find((m: { name: string }) => m.name === 'models').mountPath + '/model.gguf', env.STEPWISE_MODEL);
    // Model (~1 GiB, as the manifest says) + the KV cache it is given + 512 MiB.
    const kv = c.args[c.args.indexOf('--kv-cache-memory') + 1];
    assert.equal(kv, '1G');
    const mi = (q: string) => (q.endsWith('Gi') ? Number(q.slice(0, -2)) * 1024 : Number(q.replace('Mi', '')));
    assert.ok(mi(c.resources.requests.memory) >= 1024 + 1024 + 512, `memory request ${c.resources.requests.memory}`);
    assert.ok(mi(c.resources.limits.memory) >= mi(c.resources.requests.memory));
    assert.equal(String(c.resources.requests.cpu), c.args[c.args.indexOf('--threads') + 1], 'one kernel thread per requested core');
  });
});
