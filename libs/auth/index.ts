export * from './credentials.ts';
export * from './sasl.ts';
export * from './fast.ts';
