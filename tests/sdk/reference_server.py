#!/usr/bin/env python3
"""Reference fake of the OSS dialect, in memory — used only to check the SDK harness itself.

It is NOT the product: it exists so the tests in this directory can be proven correct without the Rust
server (`TRANSFER_BIN=tests/sdk/reference-server scripts/sdk-tests`), and as an executable statement of
what the SDKs need on the wire (V1/V4 signature verification, path parsing, response headers/XML).
Its signature code was verified against oss2 2.19.1 and alibabacloud-oss-v2 1.4.1 (V1 and V4).

Usage (same CLI as `transfer serve`; --root is ignored):
    reference_server.py serve --root DIR --listen 127.0.0.1:0
prints 'listening on http://127.0.0.1:PORT' as its first stdout line. With $FAKEOSS_LOG set, every
request/response is appended to that file as a JSON line.
"""
import base64, hashlib, json, os, sys, threading, time, uuid, itertools
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, parse_qsl, quote
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape
import crcmod

_crc = crcmod.Crc(0x142F0E1EBA9EA3693, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)


def crc64(data):
    c = _crc.new()
    c.update(data)
    return c.crcValue


LOG = os.environ.get('FAKEOSS_LOG')
lock = threading.Lock()
buckets = {}  # name -> {'versioning': None|'Enabled', 'objects': {key: [versions newest last]}, 'uploads': {}}
ctr = itertools.count(1)


def now_http():
    return formatdate(usegmt=True)


def etag_of(b):
    return '"' + hashlib.md5(b).hexdigest().upper() + '"'


def parse_tagging_header(v):
    if v is None:
        return None
    # Lenient like transfer serve: split each pair at the first '=' (the V2 Copier sends tags unencoded).
    out = {}
    for pair in v.split('&'):
        if pair:
            k, _, val = pair.partition('=')
            out[unquote(k.replace('+', ' '))] = unquote(val.replace('+', ' '))
    return out


class BadTag(Exception):
    pass



import hmac
SUBRES = {'acl','uploads','uploadId','partNumber','append','position','tagging','objectMeta','symlink','versionId',
          'versioning','versions','security-token','sequential','continuation-token','response-content-type',
          'response-content-language','response-expires','response-cache-control','response-content-disposition',
          'response-content-encoding','restore','callback','callback-var','location','bucketInfo','stat','delete',
          'resourceGroup','regionList','cloudboxes'}
SECRET = os.environ.get('OSS_ACCESS_KEY_SECRET', 'sk')
AKID = os.environ.get('OSS_ACCESS_KEY_ID', 'ak')


def _enc(s, keep_slash):
    return quote(s, safe='-_.~' + ('/' if keep_slash else ''))


def verify(method, bucket, key, pairs, headers):
    """Returns None if OK else error code."""
    lh = {k.lower(): v for k, v in headers.items()}
    auth = lh.get('authorization') or ''
    if auth.startswith('OSS '):
        ak, _, got = auth[4:].partition(':')
        if ak != AKID:
            return 'InvalidAccessKeyId'
        oh = sorted((k, v) for k, v in lh.items() if k.startswith('x-oss-'))
        res = '/' + bucket + '/' + key if bucket else '/'
        sub = sorted((k, v) for k, v in pairs if k in SUBRES)
        if sub:
            res += '?' + '&'.join(k if v == '' else k + '=' + v for k, v in sub)
        date = lh.get('x-oss-date') or lh.get('date', '')
        sts = '\n'.join([method, lh.get('content-md5', ''), lh.get('content-type', ''), date]) + '\n' + \
            ''.join('%s:%s\n' % kv for kv in oh) + res
        want = base64.b64encode(hmac.new(SECRET.encode(), sts.encode(), hashlib.sha1).digest()).decode()
        return None if want == got else 'SignatureDoesNotMatch'
    if auth.startswith('OSS4-HMAC-SHA256 '):
        fields = {}
        for p in auth[len('OSS4-HMAC-SHA256 '):].split(','):
            k, _, v = p.strip().partition('=')
            fields[k] = v
        cred = fields['Credential'].split('/')
        if cred[0] != AKID:
            return 'InvalidAccessKeyId'
        date, region, product = cred[1], cred[2], cred[3]
        addl = sorted(h.lower() for h in fields.get('AdditionalHeaders', '').split(';') if h)
        uri = _enc('/' + bucket + '/' + key if bucket else '/', True)
        q = sorted((_enc(k, False), _enc(v, False)) for k, v in pairs)
        cq = '&'.join(k if v == '' else k + '=' + v for k, v in q)
        ch = sorted((k, v) for k, v in lh.items() if k.startswith('x-oss-') or k in ('content-type', 'content-md5') or k in addl)
        creq = '\n'.join([method, uri, cq, ''.join('%s:%s\n' % kv for kv in ch), ';'.join(addl), lh.get('x-oss-content-sha256', 'UNSIGNED-PAYLOAD')])
        xdate = lh.get('x-oss-date', '')
        scope = '%s/%s/%s/aliyun_v4_request' % (date, region, product)
        sts = 'OSS4-HMAC-SHA256\n%s\n%s\n%s' % (xdate, scope, hashlib.sha256(creq.encode()).hexdigest())
        k = ('aliyun_v4' + SECRET).encode()
        for m in (date, region, product, 'aliyun_v4_request'):
            k = hmac.new(k, m.encode(), hashlib.sha256).digest()
        want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        return None if want == fields.get('Signature') else 'SignatureDoesNotMatch'
    return 'AccessDenied'


class Obj:
    def __init__(self, data, headers, otype='Normal', tags=None, symlink=None):
        self.data = data
        self.meta = {k.lower(): v for k, v in headers.items() if k.lower().startswith('x-oss-meta-')}
        self.content_type = headers.get('Content-Type') or 'application/octet-stream'
        self.otype = otype
        self.tags = tags or {}
        self.etag = etag_of(data)
        self.crc = crc64(data)
        self.mtime = now_http()
        self.version_id = None
        self.symlink = symlink
        self.storage_class = headers.get('x-oss-storage-class', 'Standard')


class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def _send(self, status, headers=None, body=b'', head=False):
        self.send_response(status)
        h = {'x-oss-request-id': uuid.uuid4().hex.upper()[:24], 'Date': now_http(), 'Server': 'AliyunOSS'}
        h.update(headers or {})
        if body and 'Content-Type' not in h:
            h['Content-Type'] = 'application/xml'
        if 'Content-Length' not in h:
            h['Content-Length'] = str(len(body))
        self._rec['resp_status'] = status
        self._rec['resp_headers'] = h
        self._rec['resp_body'] = body[:600].decode('utf-8', 'replace') if (body and h.get('Content-Type') == 'application/xml') else len(body)
        if LOG:
            with open(LOG, 'a') as f:
                f.write(json.dumps(self._rec) + '\n')
        for k, v in h.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        self._rec['resp_status'] = status
        self._rec['resp_headers'] = h
        self._rec['resp_body'] = body[:600].decode('utf-8', 'replace') if (body and h.get('Content-Type') == 'application/xml') else len(body)

    def _err(self, status, code, msg='', head=False, extra=None):
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
               '<RequestId>X</RequestId><HostId>127.0.0.1</HostId><EC>0000-00000000</EC></Error>' % (code, escape(msg))).encode()
        h = dict(extra or {})
        if head:
            h['x-oss-err'] = base64.b64encode(xml).decode()
            h['x-oss-ec'] = '0000-00000000'
            self._send(status, h, b'', head=True)
        else:
            self._send(status, h, xml)

    def handle_any(self):
        path = self.path
        raw_q = ''
        if '?' in path:
            path, raw_q = path.split('?', 1)
        q = dict(parse_qsl(raw_q, keep_blank_values=True))
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n) if n else b''
        self._rec = {'method': self.command, 'path': path, 'query': raw_q,
                     'headers': dict(self.headers.items()), 'body_len': len(body)}
        if body and (b'<' in body[:5]):
            self._rec['body'] = body[:800].decode('utf-8', 'replace')
        try:
            parts = path.lstrip('/').split('/', 1)
            bucket = unquote(parts[0])
            key = unquote(parts[1]) if len(parts) > 1 else ''
            pairs = parse_qsl(raw_q, keep_blank_values=True)
            bad = verify(self.command, bucket, key, pairs, dict(self.headers.items()))
            if bad:
                return self._err(403, bad, 'auth', head=self.command == 'HEAD')
            with lock:
                try:
                    self.dispatch(bucket, key, q, body)
                except BadTag as e:
                    self._err(400, 'InvalidTag', 'unencoded = in tag value: %s' % e)
        except Exception as e:  # pragma: no cover
            import traceback; traceback.print_exc()
            self._err(500, 'InternalError', repr(e))

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    def current(self, b, key, vid=None):
        vs = b['objects'].get(key)
        if not vs:
            return None
        if vid:
            for o in vs:
                if o.version_id == vid:
                    return o
            return None
        return vs[-1]

    def store(self, b, key, o):
        if b['versioning'] == 'Enabled':
            o.version_id = 'v%d' % next(ctr)
            b['objects'].setdefault(key, []).append(o)
        else:
            b['objects'][key] = [o]

    def obj_headers(self, o):
        h = {'ETag': o.etag, 'Last-Modified': o.mtime, 'x-oss-hash-crc64ecma': str(o.crc),
             'x-oss-object-type': o.otype, 'x-oss-storage-class': o.storage_class,
             'Content-Type': o.content_type, 'Content-Length': str(len(o.data))}
        h.update(o.meta)
        if o.tags:
            h['x-oss-tagging-count'] = str(len(o.tags))
        if o.version_id:
            h['x-oss-version-id'] = o.version_id
        if o.otype == 'Appendable':
            h['x-oss-next-append-position'] = str(len(o.data))
        return h

    def dispatch(self, bucket, key, q, body):
        m = self.command
        hd = self.headers
        head = m == 'HEAD'
        if not key:
            if m == 'PUT' and 'versioning' in q:
                st = ET.fromstring(body).findtext('Status')
                buckets[bucket]['versioning'] = st
                return self._send(200)
            if m == 'PUT':
                buckets.setdefault(bucket, {'versioning': None, 'objects': {}, 'uploads': {}})
                return self._send(200, {'Location': '/' + bucket})
            if m == 'GET' and 'uploads' in q:
                return self._send(200, body=b'<ListMultipartUploadsResult></ListMultipartUploadsResult>')
            return self._err(400, 'NotImplemented', 'bucket op')
        b = buckets.get(bucket)
        if b is None:
            return self._err(404, 'NoSuchBucket', 'The specified bucket does not exist.', head=head)
        vid = q.get('versionId')
        if m == 'PUT' and 'tagging' in q:
            o = self.current(b, key, vid)
            if not o:
                return self._err(404, 'NoSuchKey')
            root = ET.fromstring(body)
            o.tags = {t.findtext('Key'): t.findtext('Value') or '' for t in root.iter('Tag')}
            return self._send(200, {'x-oss-version-id': o.version_id} if o.version_id else {})
        if m == 'GET' and 'tagging' in q:
            o = self.current(b, key, vid)
            if not o:
                return self._err(404, 'NoSuchKey')
            x = '<?xml version="1.0" encoding="UTF-8"?>\n<Tagging><TagSet>' + ''.join(
                '<Tag><Key>%s</Key><Value>%s</Value></Tag>' % (escape(k), escape(v)) for k, v in o.tags.items()) + '</TagSet></Tagging>'
            return self._send(200, {'x-oss-version-id': o.version_id} if o.version_id else {}, x.encode())
        if m == 'PUT' and 'symlink' in q:
            target = unquote(hd.get('x-oss-symlink-target'))
            o = Obj(b'', hd, 'Symlink', parse_tagging_header(hd.get('x-oss-tagging')), symlink=target)
            self.store(b, key, o)
            return self._send(200, {'x-oss-version-id': o.version_id} if o.version_id else {})
        if m == 'GET' and 'symlink' in q:
            o = self.current(b, key, vid)
            return self._send(200, {'x-oss-symlink-target': quote(o.symlink)})
        if m == 'POST' and 'uploads' in q:
            uid = uuid.uuid4().hex.upper()
            b['uploads'][uid] = {'key': key, 'headers': dict(hd.items()), 'parts': {}}
            x = ('<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>%s</InitiateMultipartUploadResult>'
                 % (bucket, quote(key) if q.get('encoding-type') == 'url' else escape(key), uid,
                    '<EncodingType>url</EncodingType>' if q.get('encoding-type') == 'url' else ''))
            return self._send(200, body=x.encode())
        if m == 'PUT' and 'uploadId' in q:
            up = b['uploads'].get(q['uploadId'])
            if not up:
                return self._err(404, 'NoSuchUpload')
            pn = int(q['partNumber'])
            src = hd.get('x-oss-copy-source')
            if src:
                sb, sk = unquote(src.split('?')[0]).lstrip('/').split('/', 1)
                so = self.current(buckets[sb], sk)
                rng = hd.get('x-oss-copy-source-range')
                data = so.data
                if rng:
                    a, z = rng.split('=')[1].split('-')
                    data = data[int(a):int(z) + 1]
                up['parts'][pn] = (data, etag_of(data))
                x = '<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>%s</ETag></CopyPartResult>' % escape(etag_of(data))
                return self._send(200, {'ETag': etag_of(data), 'x-oss-hash-crc64ecma': str(crc64(data))}, x.encode())
            up['parts'][pn] = (body, etag_of(body))
            return self._send(200, {'ETag': etag_of(body), 'x-oss-hash-crc64ecma': str(crc64(body)),
                                    'Content-MD5': base64.b64encode(hashlib.md5(body).digest()).decode()})
        if m == 'GET' and 'uploadId' in q:
            up = b['uploads'].get(q['uploadId'])
            if not up:
                return self._err(404, 'NoSuchUpload')
            mx = int(q.get('max-parts', 1000))
            mk = int(q.get('part-number-marker', 0) or 0)
            nums = sorted(p for p in up['parts'] if p > mk)
            page = nums[:mx]
            trunc = len(nums) > mx
            x = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>'
                 '<PartNumberMarker>%d</PartNumberMarker><NextPartNumberMarker>%d</NextPartNumberMarker><MaxParts>%d</MaxParts><IsTruncated>%s</IsTruncated>'
                 % (bucket, escape(key), q['uploadId'], mk, page[-1] if page else 0, mx, 'true' if trunc else 'false'))
            for p in page:
                d, e = up['parts'][p]
                x += '<Part><PartNumber>%d</PartNumber><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>%s</ETag><HashCrc64ecma>%d</HashCrc64ecma><Size>%d</Size></Part>' % (p, escape(e), crc64(d), len(d))
            x += '</ListPartsResult>'
            return self._send(200, {}, x.encode())
        if m == 'POST' and 'uploadId' in q:
            up = b['uploads'].pop(q['uploadId'], None)
            if not up:
                return self._err(404, 'NoSuchUpload')
            if hd.get('x-oss-complete-all') == 'yes':
                nums = sorted(up['parts'])
            else:
                nums = [int(p.findtext('PartNumber')) for p in ET.fromstring(body).iter('Part')]
            data = b''.join(up['parts'][n][0] for n in nums)
            ih = up['headers']
            o = Obj(data, ih, 'Multipart', parse_tagging_header(ih.get('x-oss-tagging')))
            o.etag = '"%s-%d"' % (hashlib.md5(data).hexdigest().upper(), len(nums))
            self.store(b, key, o)
            enc = q.get('encoding-type') == 'url'
            x = ('<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult>%s<Location>http://127.0.0.1/%s/%s</Location><Bucket>%s</Bucket><Key>%s</Key><ETag>%s</ETag></CompleteMultipartUploadResult>'
                 % ('<EncodingType>url</EncodingType>' if enc else '', bucket, quote(key), bucket, quote(key) if enc else escape(key), escape(o.etag)))
            h = {'x-oss-hash-crc64ecma': str(o.crc), 'ETag': o.etag}
            if o.version_id:
                h['x-oss-version-id'] = o.version_id
            return self._send(200, h, x.encode())
        if m == 'DELETE' and 'uploadId' in q:
            b['uploads'].pop(q['uploadId'], None)
            return self._send(204)
        if m == 'POST' and 'append' in q:
            pos = int(q['position'])
            o = self.current(b, key)
            if o is None:
                if pos != 0:
                    return self._err(409, 'PositionNotEqualToLength', extra={'x-oss-next-append-position': '0'})
                o = Obj(body, hd, 'Appendable', parse_tagging_header(hd.get('x-oss-tagging')))
                self.store(b, key, o)
            else:
                if pos != len(o.data):
                    return self._err(409, 'PositionNotEqualToLength', extra={'x-oss-next-append-position': str(len(o.data))})
                o.data += body
                o.crc = crc64(o.data)
                o.etag = etag_of(o.data)
            return self._send(200, {'x-oss-next-append-position': str(len(o.data)), 'x-oss-hash-crc64ecma': str(o.crc), 'ETag': o.etag})
        if m == 'PUT' and hd.get('x-oss-copy-source'):
            src = hd.get('x-oss-copy-source')
            s, _, sq = src.partition('?')
            sb, sk = unquote(s).lstrip('/').split('/', 1)
            svid = dict(parse_qsl(sq)).get('versionId')
            so = self.current(buckets[sb], sk, svid)
            if so is None:
                return self._err(404, 'NoSuchKey')
            if hd.get('x-oss-metadata-directive', 'COPY').upper() == 'REPLACE':
                o = Obj(so.data, hd, so.otype if so.otype != 'Appendable' else 'Normal')
            else:
                o = Obj(so.data, {}, so.otype)
                o.meta = dict(so.meta)
                o.content_type = so.content_type
            if hd.get('x-oss-tagging-directive', 'Copy').lower() == 'replace':
                o.tags = parse_tagging_header(hd.get('x-oss-tagging')) or {}
            else:
                o.tags = dict(so.tags)
            o.etag = so.etag
            self.store(b, key, o)
            x = '<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult><ETag>%s</ETag><LastModified>2024-01-01T00:00:00.000Z</LastModified></CopyObjectResult>' % escape(o.etag)
            h = {'x-oss-hash-crc64ecma': str(o.crc), 'ETag': o.etag}
            if o.version_id:
                h['x-oss-version-id'] = o.version_id
            return self._send(200, h, x.encode())
        if m == 'PUT':
            o = Obj(body, hd, 'Normal', parse_tagging_header(hd.get('x-oss-tagging')))
            self.store(b, key, o)
            h = {'ETag': o.etag, 'x-oss-hash-crc64ecma': str(o.crc),
                 'Content-MD5': base64.b64encode(hashlib.md5(body).digest()).decode()}
            if o.version_id:
                h['x-oss-version-id'] = o.version_id
            return self._send(200, h)
        if m == 'HEAD' and 'objectMeta' in q:
            o = self.current(b, key, vid)
            if not o:
                return self._err(404, 'NoSuchKey', head=True)
            h = {'ETag': o.etag, 'Last-Modified': o.mtime, 'x-oss-hash-crc64ecma': str(o.crc),
                 'Content-Length': str(len(o.data)), 'x-oss-last-access-time': o.mtime}
            if o.version_id:
                h['x-oss-version-id'] = o.version_id
            return self._send(200, h, head=True)
        if m in ('HEAD', 'GET'):
            o = self.current(b, key, vid)
            if not o:
                return self._err(404, 'NoSuchKey', 'The specified key does not exist.', head=head)
            if o.otype == 'Symlink':
                o = self.current(b, o.symlink)
            h = self.obj_headers(o)
            if head:
                return self._send(200, h, head=True)
            # raw write for GET
            self._send(200, h, o.data)
            return
        if m == 'DELETE':
            b['objects'].pop(key, None)
            return self._send(204)
        return self._err(400, 'NotImplemented', m)


def main():
    args = sys.argv[1:]
    listen = '127.0.0.1:0'
    if '--listen' in args:
        listen = args[args.index('--listen') + 1]
    host, port = listen.rsplit(':', 1)
    srv = ThreadingHTTPServer((host, int(port)), H)
    print('listening on http://%s:%d' % (host, srv.server_address[1]), flush=True)
    srv.serve_forever()


if __name__ == '__main__':
    main()
