// Where uploaded files live, behind one interface: the data directory (the
// bytes come through Parley's HTTP listener) or S3-compatible object storage
// (presigned URLs: the bytes never pass through a Parley process).
import type { Slot } from './slots.ts';

export interface SlotUrls {
  readonly put: string;
  readonly get: string;
  /** Headers the PUT must carry (XEP-0363 §5 allows Authorization, Cookie and Expires). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface UploadFiles {
  readonly kind: 'disk' | 's3';
  /** The URLs of a slot just granted by a service. */
  urls(service: string, slot: Slot): Promise<SlotUrls>;
  /** Delete files of expired slots; a file that never arrived is no error. */
  remove(service: string, slots: readonly { id: string; fileName: string }[]): Promise<void>;
}

/** A file name as it goes into a URL path: one segment, percent-encoded. */
export function urlFileName(name: string): string {
  return encodeURIComponent(name);
}
