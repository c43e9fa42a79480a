// What a client stream needs from its connection manager.
import type { Accounts } from '../../libs/accounts/index.ts';
import type { FastTokens } from '../../libs/auth/fast.ts';
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
import type { Envelope } from '../../libs/bus/envelope.ts';
import type { Config } from '../../libs/config/schema.ts';
import type { StanzaErrorCondition, StreamError } from '../../libs/errors/index.ts';
import type { AuthThrottle } from './auth-throttle.ts';
import type { AdmissionKind } from './admission.ts';
import type { ClientStream } from './client-stream.ts';
import type { ClientTransport } from './transport.ts';

/** `inline`: how each inline payload of the request went, in order (user-actor.ts InlineOutcome). */
export type BindResult = { resource: string; inline: InlineOutcome[] } | { condition: StanzaErrorCondition; text?: string };
export type InlineOutcome = { ok: true } | { ok: false; condition: string; text?: string };

export interface C2sMetrics {
  auth(mechanism: string, ok: boolean): void;
  stanzaIn(kind: string): void;
  /** `receivedAt`: when the stanza entered the server (0: made by the server), for the routing latency. */
  stanzaOut(kind: string, receivedAt: number): void;
  /** A failed login counted by the login throttle. */
  authFailed?(): void;
  /** The login throttle blocked an address ('started'), or refused an attempt from a blocked one ('refused'). */
  authBlocked?(event: 'started' | 'refused'): void;
  /** A stream management resumption answered: <resumed/> (true) or <failed/> (false). */
  resumption?(ok: boolean): void;
  /** Admission control refused a new stream, a login or a resumption (admission.ts). */
  admissionRefused?(what: AdmissionKind): void;
}

export interface C2sContext {
  readonly config: Config;
  readonly hosts: HostedDomains;
  readonly accounts: Accounts;
  readonly metrics: C2sMetrics;
  /** Failed logins per address and account: back-off and blocks (auth-throttle.ts). */
  readonly authThrottle: AuthThrottle;
  /** Publish an envelope to the actor of a bare JID. */
  toActor(bare: string, env: Envelope): void;
  /** The same, by way of the session process holding the actor's shard; order is the caller's to restore. */
  viaHolder(bare: string, env: Envelope): void;
  /** Ask the account's actor to bind a resource for this stream, and apply `inline` iq payloads (serialized) once bound. */
  bind(stream: ClientStream, resource: string, inline?: string[]): Promise<BindResult>;
  /** XEP-0484 FAST tokens, in the store every connection manager shares. */
  readonly fastTokens: FastTokens;
  /** Why no session can be bound or resumed through this node now (no session process, no bus…), or undefined. */
  unavailable(): string | undefined;
  /** Whether one more new stream, login or resumption may go ahead now (admission.ts); a refusal is counted. */
  admit(what: AdmissionKind): boolean;
  /** The stream error for a new stream refused by admission: <see-other-host/> to a peer with room, or <resource-constraint/>. */
  busy(transport: ClientTransport['kind']): StreamError;
  /** This connection manager's node id (where answers to this stream's requests come). */
  readonly nodeId: string;
  /** The stream has client stanzas its actor has not confirmed yet: call its confirmTick() until it says done. */
  awaitConfirmation(stream: ClientStream): void;
  /** The stream is over; unbind tells the actor. `closed`: the client closed it (a managed session ends too, rather than waiting). */
  ended(stream: ClientStream, unbind: boolean, resource: string, closed?: boolean): void;
}
