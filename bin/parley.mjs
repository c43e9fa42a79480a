#!/usr/bin/env node
// The `parley` command: runs the TypeScript sources through tsx's loader so
// that a fresh clone needs no build step.
import { register } from 'tsx/esm/api';
register();
await import('../services/cli/main.ts');
