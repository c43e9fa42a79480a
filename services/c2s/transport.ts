// One interface for every way a client connects (TCP, direct TLS, WebSocket,
// BOSH): the transport frames the stream; the ClientStream above it is
// written once.
import type { ChannelBinding } from '../../libs/auth/sasl.ts';
import type { StreamError } from '../../libs/errors/index.ts';
import type { Element } from '../../libs/xml/element.ts';

export interface StreamEvents {
  open(attrs: Record<string, string>): void;
  stanza(el: Element): void;
  close(): void;
  error(err: StreamError): void;
  /**
   * Bytes arrived (whitespace keepalives included): the peer is in contact.
   * Returns how many milliseconds to hold them before parsing (the inbound
   * rate limit); 0 parses at once.
   */
  activity(bytes?: number): number;
  /** The connection is gone (closed by either side, reset, timed out). */
  disconnected(): void;
}

export interface ClientTransport {
  readonly kind: 'tcp' | 'tls' | 'websocket' | 'bosh';
  /** TLS is in effect on this connection. */
  readonly secure: boolean;
  /** The peer address is a loopback address (the real one, after PROXY protocol). */
  readonly loopback: boolean;
  readonly remoteAddress: string;
  /** STARTTLS can be offered. */
  readonly canStartTls: boolean;
  /** The TLS channel bindings of this connection (channel-binding.ts); none where TLS ends elsewhere or is not in effect. */
  channelBindings?(): readonly ChannelBinding[];
  attach(events: StreamEvents): void;
  /** Write the stream header (or the framing's equivalent). */
  openStream(attrs: Record<string, string>): void;
  send(data: string | Uint8Array): void;
  /** Bytes queued for the peer and not yet written to the network. */
  bufferedBytes(): number;
  /** After SASL success: the next input is a new stream header. */
  resetStream(): void;
  /** Upgrade in place; the `<proceed/>` has been written. */
  startTls(): Promise<void>;
  /** Optionally write an error, close the stream, then the connection. */
  closeStream(error?: StreamError): void;
  /**
   * The client closed its stream and the server still waits for its last ack (XEP-0198): go on reading the
   * elements it sends until closeStream(). A transport that frames each element (WebSocket) reads them anyway.
   */
  readAfterClose?(): void;
  /** Stop reading for a while (inbound rate limit). */
  pause(ms: number): void;
}
