// The component listener: external components (XEP-0114) connect here, one
// TCP stream each, and from their handshake on this process takes their
// domain's stanzas (libs/components) and routes what they send: to the actor
// of an account, a room or a served domain itself, to another component, or
// to federation, as a stanza from a domain of this server.
//
//   component ─▶ ComponentStream ─▶ route ──parley.shard.<n> (dir in)──▶ actor
//                                         ──parley.component.<domain>──▶ another component
//                                         ──parley.s2s.<n> (dir out)──▶ remote server
//   actor, s2s ──parley.component.<domain>──▶ ComponentListener ─▶ ComponentStream ─▶ component
import { createServer, type Server } from 'node:net';
import type { Bus, Subjects } from '../../libs/bus/bus.ts';
import { envelope, type Envelope, type StanzaKind } from '../../libs/bus/envelope.ts';
import { shardOf } from '../../libs/cluster/shards.ts';
import type { ComponentDirectory } from '../../libs/components/index.ts';
import type { Config } from '../../libs/config/schema.ts';
import { errorReply, StanzaError, StreamError } from '../../libs/errors/index.ts';
import { tryParseJid, type Jid } from '../../libs/jid/index.ts';
import { logger } from '../../libs/log/index.ts';
import type { Element } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { listenError } from '../listen-error.ts';
import { S2sConnection } from '../s2s/connection.ts';
import { wireStanza } from '../s2s/stanza.ts';
import { ComponentStream, type ComponentStreamOwner } from './component-stream.ts';

const log = logger('component');

export interface ComponentListenerOptions {
  config: Config;
  bus: Bus;
  subjects: Subjects;
  /** Domains whose JIDs are actors on the shards: the hosted domains (accounts, and the domain itself) and the service domains (rooms). */
  onShards: { has(domain: string): boolean };
  directory: ComponentDirectory;
  /** Some federation process is alive to take stanzas for other servers. */
  s2sAvailable(): boolean;
}

export class ComponentListener implements ComponentStreamOwner {
  private server: Server | undefined;
  private readonly streams = new Set<ComponentStream>();
  private readonly holds = new Map<ComponentStream, { release(): void }>();
  private readonly secrets: Map<string, string>;

  constructor(private readonly o: ComponentListenerOptions) {
    this.secrets = new Map(o.config.components.services.map((c) => [c.domain, c.secret]));
  }

  async start(): Promise<void> {
    const { listen, maxConnections, handshakeTimeoutSeconds } = this.o.config.components;
    const limits = { ...this.o.config.limits };
    const server = createServer({ noDelay: true }, (socket) => {
      const stream = new ComponentStream(new S2sConnection(socket, limits), this, handshakeTimeoutSeconds * 1000);
      this.streams.add(stream);
    });
    server.maxConnections = maxConnections;
    this.server = await new Promise<Server>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: listen.port, host: listen.host, backlog: listen.backlog }, () => {
        server.removeListener('error', reject);
        resolve(server);
      });
    }).catch((e: unknown) => {
      throw listenError('the component listener', 'components.listen', listen.host, listen.port, e);
    });
  }

  port(): number {
    const a = this.server?.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /** Stop accepting and close every component's stream (it reconnects, to another process when this one is drained). */
  stop(text = 'the server is shutting down'): void {
    this.server?.close();
    for (const s of [...this.streams]) s.fail(new StreamError('system-shutdown', text));
  }

  // ================================================================ ComponentStreamOwner

  secretOf(domain: string): string | undefined {
    return this.secrets.get(domain);
  }

  async authenticated(stream: ComponentStream, domain: string): Promise<void> {
    const hold = await this.o.directory.hold(domain, (env) => this.deliver(stream, env), () => {
      this.holds.delete(stream);
      stream.fail(new StreamError('conflict', `a newer connection authenticated for ${domain}; this one is replaced`));
    });
    // The stream may have ended while the hold was being registered.
    if (!this.streams.has(stream)) return hold.release();
    this.holds.set(stream, hold);
  }

  ended(stream: ComponentStream): void {
    this.streams.delete(stream);
    this.holds.get(stream)?.release();
    this.holds.delete(stream);
    if (stream.domain) log.info('component disconnected', { domain: stream.domain, address: stream.remoteAddress });
  }

  /** A stanza for the component: its addresses come from the envelope (a broadcast presence carries none of its own). */
  private deliver(stream: ComponentStream, env: Envelope): void {
    if (env.kind === 'ctl') return;
    let xml: string;
    try {
      xml = wireStanza(env);
    } catch (e) {
      log.warn('cannot serialize a stanza for a component', { domain: stream.domain, error: e });
      return;
    }
    stream.send(xml);
  }

  /** A stanza from a component, `from` already checked: on to its addressee, or an error back. */
  route(stream: ComponentStream, e: Element, from: Jid): void {
    const to = tryParseJid(e.attrs.to ?? '');
    if (!to) return this.bounce(stream, e, new StanzaError('jid-malformed', `'${e.attrs.to}' is not a valid JID`));
    e.attrs.to = to.full;
    const kind = e.name as StanzaKind;
    const type = e.attrs.type ?? '';
    if (kind === 'iq' && (e.attrs.id === undefined || (type !== 'get' && type !== 'set' && type !== 'result' && type !== 'error'))) {
      return this.bounce(stream, e, new StanzaError('bad-request', 'an iq needs an id and a type of get, set, result or error'));
    }
    const env = envelope({ kind, dir: 'in', from: from.full, to: to.full, type, id: e.attrs.id ?? '', xml: serialize(e) });
    const domain = to.domain;
    const { directory, onShards, bus, subjects, config } = this.o;
    if (directory.has(domain)) {
      if (!directory.send(domain, env)) this.bounce(stream, e, new StanzaError('service-unavailable', `the component ${domain} is not connected`));
      return;
    }
    if (onShards.has(domain)) {
      // The actor of an account, a room, or of a served domain itself (which answers iqs with the modules' host handlers).
      bus.publish(subjects.shard(shardOf(to.bare, config.cluster.shards)), env);
      return;
    }
    if (!config.s2s.enabled || !this.o.s2sAvailable()) return this.bounce(stream, e, new StanzaError('remote-server-not-found', `no route to ${domain}`));
    bus.publish(subjects.s2s(shardOf(domain, config.s2s.shards)), { ...env, dir: 'out' });
  }

  /** An error back to the component (never for an error or a result). */
  private bounce(stream: ComponentStream, e: Element, err: StanzaError): void {
    if (e.attrs.type === 'error' || (e.name === 'iq' && e.attrs.type === 'result')) return;
    const reply = errorReply(e, err);
    if (reply.attrs.from === undefined || !tryParseJid(reply.attrs.from)) reply.attrs.from = stream.domain;
    stream.send(serialize(reply));
  }
}
