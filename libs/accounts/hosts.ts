// The set of domains this deployment serves: the configured ones plus those
// added at run time, refreshed from the store so every node sees additions.
import type { Domains } from './index.ts';

export class HostedDomains {
  private set: Set<string>;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly configured: readonly string[], private readonly domains?: Domains) {
    this.set = new Set(configured);
  }

  has(domain: string): boolean {
    return this.set.has(domain);
  }

  list(): string[] {
    return [...this.set].sort();
  }

  async refresh(): Promise<void> {
    if (!this.domains) return;
    const stored = await this.domains.list();
    this.set = new Set([...this.configured, ...stored]);
  }

  async start(refreshMs = 10_000): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh().catch(() => {}), refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
