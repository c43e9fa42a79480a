export * from './bus.ts';
export * from './envelope.ts';
export { InProcessBus } from './inprocess.ts';
export { NatsBus } from './nats.ts';
