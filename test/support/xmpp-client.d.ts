// The part of @xmpp/client's API the tests use (the package ships no types).
declare module '@xmpp/xml' {
  export class Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: (Element | string)[];
    is(name: string, xmlns?: string): boolean;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getChildElements(): Element[];
    getText(): string;
    toString(): string;
  }
}

declare module '@xmpp/client' {
  import type { Element } from '@xmpp/xml';
  export type { Element };
  export function xml(name: string, attrs?: Record<string, string | undefined> | string, ...children: (Element | string | undefined)[]): Element;
  export interface Client {
    start(): Promise<{ toString(): string }>;
    stop(): Promise<void>;
    send(el: Element): Promise<void>;
    on(event: 'stanza', cb: (s: Element) => void): void;
    on(event: 'error' | 'offline' | 'online' | 'status', cb: (...a: unknown[]) => void): void;
    reconnect: { stop(): void };
    iqCaller: { request(el: Element, timeout?: number): Promise<Element> };
    iqCallee: { get(ns: string, name: string, handler: (ctx: { stanza: Element; element: Element }) => Element | Promise<Element>): void };
    jid?: { toString(): string };
  }
  export function client(opts: { service: string; domain: string; username?: string; password?: string; resource?: string }): Client;
}
