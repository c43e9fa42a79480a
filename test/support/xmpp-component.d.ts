// The part of @xmpp/component's API the tests use (the package ships no types).
declare module '@xmpp/component' {
  import type { Element } from '@xmpp/xml';
  export function xml(name: string, attrs?: Record<string, string | undefined> | string, ...children: (Element | string | undefined)[]): Element;
  export interface Component {
    start(): Promise<unknown>;
    stop(): Promise<void>;
    send(el: Element): Promise<void>;
    on(event: 'stanza', cb: (s: Element) => void): void;
    on(event: 'error' | 'offline' | 'online' | 'status', cb: (...a: unknown[]) => void): void;
    reconnect: { stop(): void };
    iqCallee: { get(ns: string, name: string, handler: (ctx: { stanza: Element; element: Element }) => Element | Record<string, never> | Promise<Element>): void };
  }
  export function component(opts: { service: string; domain: string; password: string }): Component;
}
