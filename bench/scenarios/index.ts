import type { Scenario } from '../lib/run.ts';
import { chat } from './chat.ts';
import { idle } from './idle.ts';
import { login } from './login.ts';
import { presence } from './presence.ts';

export const SCENARIOS: Record<string, Scenario> = { login, idle, chat, presence };
