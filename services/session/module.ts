// What a protocol feature module looks like (Prosody's mod_* shape): it names
// the disco features it adds and the iq payloads it answers; the core routes.
//
// Handler keys: `${'get'|'set'}/${'host'|'account'}/${xmlns}:${payloadName}`
//  - host:    the iq is addressed to a served domain (or has no `to` and the
//             payload is not account-scoped) — answered by the server itself;
//  - account: the iq is addressed to a user's bare JID (or has no `to`) —
//             answered by the server on behalf of that account.
import type { Element } from '../../libs/xml/element.ts';
import type { Config } from '../../libs/config/schema.ts';
import type { Store } from '../../libs/store/store.ts';
import type { HostedDomains } from '../../libs/accounts/hosts.ts';

export interface IqRequest {
  /** The whole iq stanza, `from` stamped by the server. */
  stanza: Element;
  /** Its single payload child. */
  payload: Element;
  from: string;
  /** The addressed entity: a domain (host) or a bare JID (account). */
  to: string;
}

export interface ServerContext {
  readonly config: Config;
  readonly store: Store;
  readonly hosts: HostedDomains;
  /** Every feature of every enabled module, for disco#info. */
  readonly features: readonly string[];
}

/** Return the result payload (or nothing for an empty result); throw a StanzaError to refuse. */
export type IqHandler = (req: IqRequest, ctx: ServerContext) => Element | undefined | void | Promise<Element | undefined | void>;

export type IqKey = `${'get' | 'set'}/${'host' | 'account'}/${string}`;

export interface XmppModule {
  name: string;
  features?: readonly string[];
  iq?: Partial<Record<IqKey, IqHandler>>;
}

export function defineModule(m: XmppModule): XmppModule {
  return m;
}

/** The lookup table the router uses: one map from key to handler. */
export class ModuleRegistry {
  private readonly handlers = new Map<string, IqHandler>();
  readonly features: string[] = [];

  constructor(modules: readonly XmppModule[]) {
    for (const m of modules) {
      for (const f of m.features ?? []) if (!this.features.includes(f)) this.features.push(f);
      for (const [k, h] of Object.entries(m.iq ?? {})) {
        if (this.handlers.has(k)) throw new Error(`two modules handle ${k}`);
        if (h) this.handlers.set(k, h);
      }
    }
    this.features.sort();
  }

  iqHandler(type: string, target: 'host' | 'account', payload: Element): IqHandler | undefined {
    return this.handlers.get(`${type}/${target}/${payload.attrs.xmlns ?? ''}:${payload.name}`);
  }
}
