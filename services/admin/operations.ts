// The administration operations of a running Parley, in one place. Every way
// in — the HTTP admin API (http-api.ts), the `parley` CLI through it, ad-hoc
// commands (XEP-0050/XEP-0133), export and import (XEP-0227) — calls these and
// nothing else, so each operation checks its input, reaches the processes it
// concerns and answers one way, whatever asked.
//
// In a cluster an operation asked of any process gathers from or routes to the
// others over the bus (cluster-admin.ts): every c2s process answers for its own
// connections, a kick goes to the process that holds the stream. Embedded, the
// same requests go over the in-process bus to the one process.
import type { LogFormat, LogLevel } from '../../libs/log/index.ts';

/** How a client is connected: plain TCP (STARTTLS or not), direct TLS (XEP-0368), WebSocket (RFC 7395), BOSH (XEP-0206). */
export type SessionTransport = 'tcp' | 'tls' | 'ws' | 'bosh';

/** One bound client session, as the c2s process that holds its connection sees it. */
export interface SessionInfo {
  /** The full JID, local@domain/resource. */
  jid: string;
  resource: string;
  /** The process holding the connection. */
  node: string;
  /** The client's address (after the PROXY protocol, IPv4-mapped addresses as IPv4). */
  address: string;
  /** When the connection was opened (ISO 8601). */
  since: string;
  transport: SessionTransport;
  /** TLS in effect (direct TLS, STARTTLS done, HTTPS/WSS). */
  tls: boolean;
  /** XEP-0198 stream management enabled on the stream. */
  sm: boolean;
}

/** A live process of the deployment. */
export interface NodeInfo {
  node: string;
  /** all (embedded), c2s, session or s2s. */
  role: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

/** A count and its rate over the last interval. */
export interface Rate {
  total: number;
  perSecond: number;
}

/** What one process reports. */
export interface NodeStats {
  node: string;
  role: string;
  /** Bound sessions on this process's connections (c2s roles; 0 otherwise). */
  sessions: number;
  /** Bound sessions by transport (c2s roles). */
  sessionsByTransport: Record<SessionTransport, number>;
  /** Open connections by transport, bound or not (c2s roles). */
  connections: Record<SessionTransport, number>;
  /** Accounts with at least one session among this process's actors (session roles; a session waiting to be resumed counts). */
  usersOnline: number;
  /** Successful logins (SASL success) on this process. */
  logins: Rate;
  /** Stanzas received from clients on this process. */
  stanzas: Rate;
  /** The interval the rates are measured over, in seconds. */
  intervalSeconds: number;
}

export interface Stats {
  /** Accounts with at least one session, over the whole deployment (each account's actor lives on one process). */
  usersOnline: number;
  sessions: number;
  loginsPerSecond: number;
  stanzasPerSecond: number;
  nodes: NodeStats[];
  /** Processes the membership lists that did not answer in time. */
  unreachable: string[];
}

export interface KickResult {
  /** The sessions whose streams were closed. */
  kicked: SessionInfo[];
  unreachable: string[];
}

export interface AnnounceRequest {
  domain: string;
  body: string;
  subject?: string;
  /** The message type: headline (the default: not stored offline, not archived) or normal. */
  type?: 'headline' | 'normal';
}

export interface AnnounceResult {
  /** Sessions the announcement was sent to. */
  sessions: number;
  /** Distinct accounts among them. */
  users: number;
  unreachable: string[];
}

export interface LogLevelResult {
  nodes: Array<{ node: string; previous: LogLevel; level: LogLevel }>;
  unreachable: string[];
}

/** What one process did with its re-read configuration file. */
export interface NodeReload {
  node: string;
  /** Changed keys now in effect. */
  applied: string[];
  /** Changed keys that take effect only after a restart of this process. */
  notApplied: string[];
  /** TLS certificate and key files re-read (whether or not their paths changed); false when the process serves no TLS. */
  certificatesReloaded: boolean;
  /** Set when the configuration could not be read or is invalid: then nothing changed on this process. */
  error?: string;
}

export interface ReloadResult {
  nodes: NodeReload[];
  unreachable: string[];
}

/**
 * The administration operations. Every method checks its input first and
 * throws an AdminError (nothing changed) for bad input, an unknown node,
 * account or session.
 */
export interface AdminOperations {
  /** The live processes (the node that answers included). */
  nodes(): Promise<NodeInfo[]>;
  /** Bound sessions of every c2s process, optionally of one domain. */
  listSessions(filter?: { domain?: string }): Promise<{ sessions: SessionInfo[]; unreachable: string[] }>;
  /**
   * Close the stream of a full JID, or of every session of a bare JID, with the
   * stream error <policy-violation/> and a text; the session ends (no resumption).
   * No such session: AdminError not-found.
   */
  kickSession(jid: string, text?: string): Promise<KickResult>;
  stats(): Promise<Stats>;
  /** A message from the domain to every session of the domain's online users. */
  announce(req: AnnounceRequest): Promise<AnnounceResult>;
  logLevels(): Promise<NodeInfo[]>;
  /** Every process, or one (`node`). */
  setLogLevel(level: LogLevel, node?: string): Promise<LogLevelResult>;
  /** Every process, or one, re-reads its configuration file and applies what can change while running. */
  reload(node?: string): Promise<ReloadResult>;

  // Accounts (XEP-0133 add/delete user, change password; XEP-0227).
  listUsers(domain: string): Promise<string[]>;
  /** AdminError conflict when it exists. */
  addUser(jid: string, password: string): Promise<void>;
  /** AdminError not-found when there is no such account. */
  setPassword(jid: string, password: string): Promise<void>;
  /** Deletes the account with all its data through its actor (its contacts are told). */
  removeUser(jid: string): Promise<void>;
  /**
   * Disables an account (its sessions end with a stream error and it cannot log in: SASL <account-disabled/>)
   * or enables it again. AdminError not-found when there is no such account.
   */
  disableUser(jid: string, disabled: boolean): Promise<void>;
}

/** Why an operation was refused; HTTP status and XEP-0050 error condition follow from the code. */
export type AdminErrorCode = 'bad-request' | 'unauthorized' | 'not-found' | 'conflict' | 'unavailable';

export class AdminError extends Error {
  /** `details`: more of the answer, beside the message (a reload refused by some processes: what each did). */
  constructor(readonly code: AdminErrorCode, message: string, readonly details?: Record<string, unknown>) {
    super(message);
    this.name = 'AdminError';
  }
}

export const HTTP_STATUS: Record<AdminErrorCode, number> = {
  'bad-request': 400, unauthorized: 401, 'not-found': 404, conflict: 409, unavailable: 503,
};
