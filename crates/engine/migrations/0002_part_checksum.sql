-- The checksum the server checked each part against, where the store sends one (S3: "crc32c:<base64>"):
-- CompleteMultipartUpload names it again. NULL where the store checks parts by their CRC-64 (OSS) or
-- sends none (S3 with Content-MD5).
ALTER TABLE parts ADD COLUMN checksum TEXT;
