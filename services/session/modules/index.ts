// The enabled protocol modules: adding a feature means adding a file and a line here.
import type { XmppModule } from '../module.ts';
import disco from './disco.ts';
import ping from './ping.ts';

export const modules: readonly XmppModule[] = [disco, ping];
