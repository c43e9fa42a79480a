export * from './credentials.ts';
export * from './sasl.ts';
