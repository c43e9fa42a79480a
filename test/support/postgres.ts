// A PostgreSQL database of its own for one test: created with a random name on
// the server PARLEY_TEST_POSTGRES names (default: the local one, trust auth),
// dropped when the test ends, so that runs never collide.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const POSTGRES_SERVER = process.env.PARLEY_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  url: string;
  /** A query on the test database (a connection of its own per call). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  drop(): Promise<void>;
}

async function admin<T>(work: (c: pg.Client) => Promise<T>, url = POSTGRES_SERVER): Promise<T> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return await work(c);
  } finally {
    await c.end();
  }
}

export async function createDatabase(prefix = 'parley_test'): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const u = new URL(POSTGRES_SERVER);
  u.pathname = `/${name}`;
  const url = u.toString();
  return {
    name, url,
    query: (sql, values) => admin((c) => c.query(sql, values), url),
    // WITH (FORCE): a connection left open by a failed test does not keep the database.
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}
