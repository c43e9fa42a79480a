// Uploaded files in S3-compatible object storage (the cluster): the service
// hands out presigned URLs, so the bytes go between the client and the bucket
// and never through a Parley process. The PUT URL signs the slot's size and
// content type: a request with others fails the signature check (HTTP 403).
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Config } from '../config/schema.ts';
import { urlFileName, type SlotUrls, type UploadFiles } from './files.ts';
import type { Slot } from './slots.ts';

type S3Settings = Extract<Config['upload']['store'], { kind: 's3' }>;

/** SigV4 presigned URLs live at most seven days. */
const MAX_PRESIGNED_SECONDS = 7 * 86_400;
/** Deletions in flight at once during a sweep. */
const DELETE_PARALLEL = 16;

export class S3Files implements UploadFiles {
  readonly kind = 's3';
  private readonly client: S3Client;

  constructor(private readonly s3: S3Settings, private readonly slotSeconds: number, private readonly fileLifetimeSeconds: number) {
    this.client = new S3Client({
      region: s3.region,
      endpoint: s3.endpoint,
      forcePathStyle: s3.forcePathStyle,
      credentials: s3.accessKeyId && s3.secretAccessKey ? { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } : undefined,
      // Checksums only where S3 requires them: a presigned PUT must not demand a checksum the client cannot know.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private key(service: string, id: string, fileName: string): string {
    return `${this.s3.prefix}${service}/${id}/${fileName}`;
  }

  async urls(service: string, slot: Slot): Promise<SlotUrls> {
    const key = this.key(service, slot.id, slot.fileName);
    const put = await getSignedUrl(this.client,
      new PutObjectCommand({ Bucket: this.s3.bucket, Key: key, ContentLength: slot.size, ContentType: slot.contentType }),
      { expiresIn: this.slotSeconds, signableHeaders: new Set(['content-type', 'content-length']) });
    const get = this.s3.publicUrl
      ? `${this.s3.publicUrl.replace(/\/+$/, '')}/${this.key(service, slot.id, urlFileName(slot.fileName))}`
      : await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.s3.bucket, Key: key }),
        { expiresIn: Math.min(this.fileLifetimeSeconds, MAX_PRESIGNED_SECONDS) });
    return { put, get };
  }

  async remove(service: string, slots: readonly { id: string; fileName: string }[]): Promise<void> {
    for (let i = 0; i < slots.length; i += DELETE_PARALLEL) {
      // DeleteObject of an absent key succeeds: a slot never used costs nothing here.
      await Promise.all(slots.slice(i, i + DELETE_PARALLEL).map((s) =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.s3.bucket, Key: this.key(service, s.id, s.fileName) }))));
    }
  }
}
