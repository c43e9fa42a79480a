// The Kubernetes manifests (deploy/kubernetes) hold together without a
// cluster: every document parses and names its apiVersion, kind and
// metadata.name; every PodDisruptionBudget and Service selects the pods of a
// Deployment or StatefulSet; every port a Service targets and every port a
// probe names is a container port of those pods; every volume mounted is
// declared, every ConfigMap mounted is in the manifests. The same checks run
// on broken manifests, so that each one is seen to fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';

const DIR = new URL('../../deploy/kubernetes/', import.meta.url);

type Obj = Record<string, unknown>;

interface Doc {
  where: string;
  value: unknown;
}

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The documents of every manifest file, in file order; a YAML syntax error is a problem of its own. */
function load(): { docs: Doc[]; problems: string[] } {
  const docs: Doc[] = [];
  const problems: string[] = [];
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).sort();
  for (const f of files) {
    parseAllDocuments(readFileSync(new URL(f, DIR), 'utf8')).forEach((d, i) => {
      const where = `${f} document ${i + 1}`;
      for (const e of d.errors) problems.push(`${where}: ${e.message}`);
      docs.push({ where, value: d.toJS() as unknown });
    });
  }
  return { docs, problems };
}

/** true when every label the selector asks for is on the pod. */
function selects(selector: Obj, labels: Obj): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

interface Workload {
  name: string;
  labels: Obj;
  containers: Obj[];
}

const DNS_1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Every problem found in a set of manifest documents (empty: they hold together). */
function check(docs: Doc[]): string[] {
  const problems: string[] = [];
  const workloads: Workload[] = [];
  const configMaps = new Set<string>();
  const seen = new Set<string>();
  const objects: { where: string; kind: string; name: string; o: Obj }[] = [];

  for (const { where, value } of docs) {
    if (value === null || value === undefined) continue; // an empty document (a trailing ---)
    if (!isObj(value)) { problems.push(`${where}: not a mapping`); continue; }
    const apiVersion = str(value.apiVersion);
    const kind = str(value.kind);
    const name = str(obj(value.metadata).name);
    if (!apiVersion) problems.push(`${where}: no apiVersion`);
    if (!kind) problems.push(`${where}: no kind`);
    if (!name) problems.push(`${where}: no metadata.name`);
    if (!apiVersion || !kind || !name) continue;
    if (!DNS_1123.test(name) || name.length > 63) problems.push(`${where}: metadata.name ${name} is not a DNS label`);
    const key = `${kind}/${name}`;
    if (seen.has(key)) problems.push(`${where}: ${key} declared twice`);
    seen.add(key);
    objects.push({ where: `${where} (${key})`, kind, name, o: value });
    if (kind === 'ConfigMap') configMaps.add(name);
  }

  for (const { where, kind, name, o } of objects) {
    if (kind !== 'Deployment' && kind !== 'StatefulSet') continue;
    const spec = obj(o.spec);
    const template = obj(spec.template);
    const labels = obj(obj(template.metadata).labels);
    const matchLabels = obj(obj(spec.selector).matchLabels);
    if (!selects(matchLabels, labels)) problems.push(`${where}: spec.selector.matchLabels does not match the pod template's labels`);
    const podSpec = obj(template.spec);
    const containers = list(podSpec.containers).map(obj);
    if (containers.length === 0) problems.push(`${where}: no containers`);
    const volumes = new Set(list(podSpec.volumes).map((v) => str(obj(v).name)));
    for (const v of list(podSpec.volumes).map(obj)) {
      const cm = str(obj(v.configMap).name);
      if (cm && !configMaps.has(cm)) problems.push(`${where}: volume ${String(v.name)} mounts ConfigMap ${cm}, which no manifest declares`);
    }
    for (const c of containers) {
      const cname = str(c.name) ?? '?';
      if (!str(c.name) || !str(c.image)) problems.push(`${where}: a container without name or image`);
      const portNames = new Set<string>();
      const portNumbers = new Set<number>();
      for (const p of list(c.ports).map(obj)) {
        const n = p.containerPort;
        if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) problems.push(`${where}: container ${cname} port ${String(n)} is not a port number`);
        else portNumbers.add(n);
        const pn = str(p.name);
        if (pn !== undefined) {
          if (pn.length > 15 || !DNS_1123.test(pn)) problems.push(`${where}: container ${cname} port name ${pn} is not an IANA service name`);
          portNames.add(pn);
        }
      }
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        const port = obj(obj(c[probe]).httpGet).port;
        if (port === undefined) continue;
        if (typeof port === 'string' ? !portNames.has(port) : !portNumbers.has(Number(port))) {
          problems.push(`${where}: container ${cname} ${probe} uses port ${String(port)}, which it does not declare`);
        }
      }
      for (const m of list(c.volumeMounts).map(obj)) {
        if (!volumes.has(str(m.name))) problems.push(`${where}: container ${cname} mounts volume ${String(m.name)}, which the pod does not declare`);
      }
    }
    workloads.push({ name, labels, containers });
  }

  const podsOf = (selector: Obj): Workload[] => workloads.filter((w) => selects(selector, w.labels));

  for (const { where, kind, o } of objects) {
    const spec = obj(o.spec);
    if (kind === 'PodDisruptionBudget') {
      const hasMin = spec.minAvailable !== undefined;
      const hasMax = spec.maxUnavailable !== undefined;
      if (hasMin === hasMax) problems.push(`${where}: needs exactly one of minAvailable and maxUnavailable`);
      const sel = obj(obj(spec.selector).matchLabels);
      if (podsOf(sel).length === 0) problems.push(`${where}: selector ${JSON.stringify(sel)} matches the pods of no Deployment or StatefulSet`);
    }
    if (kind === 'Service') {
      const sel = obj(spec.selector);
      const pods = podsOf(sel);
      if (pods.length === 0) { problems.push(`${where}: selector ${JSON.stringify(sel)} matches the pods of no Deployment or StatefulSet`); continue; }
      for (const p of list(spec.ports).map(obj)) {
        const target = p.targetPort ?? p.port;
        for (const w of pods) {
          const found = w.containers.some((c) => list(c.ports).map(obj).some((cp) =>
            typeof target === 'string' ? cp.name === target : cp.containerPort === Number(target)));
          if (!found) problems.push(`${where}: port ${String(p.name ?? p.port)} targets ${String(target)}, which no container of ${w.name} declares`);
        }
      }
    }
  }
  return problems;
}

test('every manifest in deploy/kubernetes parses and holds together', () => {
  const { docs, problems } = load();
  assert.deepEqual(problems, [], 'YAML errors');
  const kinds = docs.map((d) => `${String(obj(d.value).kind)}/${String(obj(obj(d.value).metadata).name)}`).sort();
  // What deploy/README.md says the directory holds.
  for (const k of ['ConfigMap/parley-config', 'Deployment/parley-c2s', 'Deployment/parley-session',
    'PodDisruptionBudget/parley-c2s', 'PodDisruptionBudget/parley-session', 'Service/parley-xmpp']) {
    assert.ok(kinds.includes(k), `${k} in deploy/kubernetes (found ${kinds.join(', ')})`);
  }
  assert.deepEqual(check(docs), []);
});

test('session pods prefer distinct nodes; both Deployments spread over zones', () => {
  const { docs } = load();
  const deployment = (name: string): Obj => obj(obj(obj(obj(docs.map((d) => d.value).find((v) =>
    obj(v).kind === 'Deployment' && obj(obj(v).metadata).name === name)).spec).template).spec);
  const session = deployment('parley-session');
  const anti = list(obj(obj(session.affinity).podAntiAffinity).preferredDuringSchedulingIgnoredDuringExecution).map(obj);
  assert.ok(anti.some((t) => obj(t.podAffinityTerm).topologyKey === 'kubernetes.io/hostname'
    && obj(obj(obj(t.podAffinityTerm).labelSelector).matchLabels)['app.kubernetes.io/component'] === 'session'),
  'a preferred anti-affinity by hostname among session pods');
  for (const name of ['parley-session', 'parley-c2s']) {
    const spread = list(deployment(name).topologySpreadConstraints).map(obj);
    assert.ok(spread.some((c) => c.topologyKey === 'topology.kubernetes.io/zone'), `${name} spreads over zones`);
    assert.ok(spread.every((c) => c.whenUnsatisfiable === 'ScheduleAnyway'), `${name}: spreading never leaves a pod Pending`);
  }
});

const doc = (value: unknown): Doc => ({ where: 'bad.yaml', value });
const deploymentDoc = (name: string, component: string, ports: Obj[]): Doc => doc({
  apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name },
  spec: {
    selector: { matchLabels: { app: component } },
    template: {
      metadata: { labels: { app: component } },
      spec: { containers: [{ name: 'parley', image: 'parley:0', ports, readinessProbe: { httpGet: { path: '/readyz', port: 'metrics' } } }] },
    },
  },
});

test('the checks catch what they look for', () => {
  const good = deploymentDoc('parley-c2s', 'c2s', [{ name: 'metrics', containerPort: 9464 }, { name: 'xmpp-client', containerPort: 5222 }]);
  assert.deepEqual(check([good]), []);

  assert.deepEqual(check([doc({ kind: 'Service', metadata: { name: 'x' } })]), ['bad.yaml: no apiVersion']);
  assert.deepEqual(check([doc({ apiVersion: 'v1', kind: 'ConfigMap', metadata: {} })]), ['bad.yaml: no metadata.name']);

  const pdb = (app: string): Doc => doc({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'p' },
    spec: { maxUnavailable: 1, selector: { matchLabels: { app } } } });
  assert.deepEqual(check([good, pdb('c2s')]), []);
  assert.match(check([good, pdb('sessions')]).join('\n'), /PodDisruptionBudget\/p\): selector \{"app":"sessions"\} matches the pods of no Deployment/);

  const service = (targetPort: string | number): Doc => doc({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' },
    spec: { selector: { app: 'c2s' }, ports: [{ name: 'xmpp', port: 5222, targetPort }] } });
  assert.deepEqual(check([good, service('xmpp-client')]), []);
  assert.deepEqual(check([good, service(5222)]), []);
  assert.match(check([good, service('xmpp')]).join('\n'), /port xmpp targets xmpp, which no container of parley-c2s declares/);
  assert.match(check([good, service(5269)]).join('\n'), /targets 5269, which no container/);

  const noMetrics = deploymentDoc('parley-c2s', 'c2s', [{ name: 'xmpp-client', containerPort: 5222 }]);
  assert.match(check([noMetrics]).join('\n'), /readinessProbe uses port metrics, which it does not declare/);
  const mismatch = deploymentDoc('parley-c2s', 'c2s', []);
  obj(obj(mismatch.value).spec).selector = { matchLabels: { app: 'session' } };
  assert.match(check([mismatch]).join('\n'), /matchLabels does not match the pod template's labels/);
});

// The Kubernetes API schemas themselves (the kubernetes-models package's JSON schemas, the OpenAPI definitions
// kubeconform checks against): every required field present, every field of the right type.
const MODELS: Record<string, (value: Obj) => { validate(): void }> = {
  'apps/v1 Deployment': (v) => new Deployment(v as ConstructorParameters<typeof Deployment>[0]),
  'policy/v1 PodDisruptionBudget': (v) => new PodDisruptionBudget(v as ConstructorParameters<typeof PodDisruptionBudget>[0]),
  'v1 Service': (v) => new Service(v as ConstructorParameters<typeof Service>[0]),
  'v1 ConfigMap': (v) => new ConfigMap(v as ConstructorParameters<typeof ConfigMap>[0]),
};

function schemaProblems(docs: Doc[]): string[] {
  const problems: string[] = [];
  for (const d of docs) {
    const v = obj(d.value);
    const key = `${str(v.apiVersion)} ${str(v.kind)}`;
    const make = MODELS[key];
    if (!make) {
      problems.push(`${d.where}: no schema here for ${key}`);
      continue;
    }
    try {
      make(v).validate();
    } catch (e) {
      problems.push(`${d.where}: ${key}: ${(e as Error).message}`);
    }
  }
  return problems;
}

test('every manifest validates against the Kubernetes API schema of its kind', () => {
  const { docs } = load();
  assert.ok(docs.length >= 5, `manifests read: ${docs.length}`);
  assert.deepEqual(schemaProblems(docs), []);
});

test('the schema check catches a missing required field and a wrong type', () => {
  const good = deploymentDoc('parley-c2s', 'c2s', [{ name: 'metrics', containerPort: 9464 }]);
  assert.deepEqual(schemaProblems([good]), []);
  const noSelector = deploymentDoc('parley-c2s', 'c2s', [{ name: 'metrics', containerPort: 9464 }]);
  delete obj(obj(noSelector.value).spec).selector;
  assert.equal(schemaProblems([noSelector]).length, 1);
  const wrongType = deploymentDoc('parley-c2s', 'c2s', [{ name: 'metrics', containerPort: 'ninety' as unknown as number }]);
  assert.equal(schemaProblems([wrongType]).length, 1);
});
