// Messages between the orchestrating process and its load-generating workers.
import type { Endpoint } from './wire.ts';
import type { Mechanism } from './scram.ts';

export interface WorkerInit {
  type: 'init';
  id: number;
  endpoint: Endpoint;
  domain: string;
  prefix: string;
  password: string;
  mech: Mechanism | 'auto';
}

export type Command =
  | { type: 'login'; users: number[]; concurrency: number; roster: boolean; presence: boolean; timeoutMs: number; smRequestEvery: number; saltOnly?: boolean }
  | { type: 'chat'; step: number; rate: number; durationMs: number; timeoutMs: number; payload: number }
  | { type: 'presence'; step: number; rate: number; durationMs: number; timeoutMs: number }
  /** Closes every stream, or `count` of them spread evenly (their users are in the reply, to log in again). */
  | { type: 'logout'; count?: number };

/** Cumulative per-worker counters, sent once a second for the progress line. */
export interface Counters { online: number; failed: number; sent: number; received: number; disconnects: number; pings: number }

export interface LoginReply { type: 'login'; ok: number; failed: number; errors: string[]; hist: string }
export interface StepReply {
  type: 'step';
  sent: number;
  /** Not sent because the connection was closed or its send buffer was over 1 MiB. */
  skipped: number;
  received: number;
  /** Arrived after the loss timeout: counted as lost. */
  late: number;
  /** Delivered to a connection it was not addressed to (e.g. an error bounce). */
  misrouted: number;
  /** Presence only: notifications that were the sender's own echo. */
  self: number;
  sendMs: number;
  /** From the step's start to the last in-time delivery: the delivered rate's denominator. */
  spanMs: number;
  hist: string;
  /** Stream management (--sm): stanzas sent on managed streams, how many of them the server acknowledged by the step's end. */
  smSent: number;
  acked: number;
  /** From a stanza's send to the <a h/> covering it (µs). */
  ackHist: string;
  /** From one of our <r/> to the <a h/> covering everything sent before it (µs). */
  requestHist: string;
}
export type Reply = { type: 'ready' } | LoginReply | StepReply | { type: 'logout'; closed: number; users: number[] } | { type: 'progress'; counters: Counters } | { type: 'fatal'; message: string };

/** Wall-clock microseconds, comparable across worker threads and processes on one host. */
export const nowUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);
