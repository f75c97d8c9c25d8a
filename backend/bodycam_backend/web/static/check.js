// The browser's own integrity check (docs/review.md): SHA-256 of the very bytes it plays, the device's
// ECDSA P-256 signature over each manifest (key taken from the device certificate), and the chain link
// from each manifest to the previous one. Nothing here trusts the server's own verdict.
"use strict";

const BodycamCheck = (() => {
  const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
  const sha256 = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));

  // Minimal DER reader: enough to walk an X.509 certificate and an ECDSA signature.
  function tlv(bytes, pos) {
    const tag = bytes[pos];
    let len = bytes[pos + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + bytes[pos + 2 + i];
      hdr = 2 + n;
    }
    return { tag, start: pos, body: pos + hdr, end: pos + hdr + len };
  }
  function children(bytes, node) {
    const out = [];
    for (let p = node.body; p < node.end;) { const c = tlv(bytes, p); out.push(c); p = c.end; }
    return out;
  }
  function spkiOf(certDer) {
    const cert = tlv(certDer, 0);
    const tbs = children(certDer, cert)[0];
    let fields = children(certDer, tbs);
    if (fields[0].tag === 0xa0) fields = fields.slice(1); // [0] version
    const spki = fields[5]; // serial, signature, issuer, validity, subject, subjectPublicKeyInfo
    return certDer.slice(spki.start, spki.end);
  }
  function derToRaw(sig) {
    const seq = tlv(sig, 0);
    const [r, s] = children(sig, seq);
    const fix = (n) => {
      let v = sig.slice(n.body, n.end);
      while (v.length > 32 && v[0] === 0) v = v.slice(1);
      const out = new Uint8Array(32);
      out.set(v, 32 - v.length);
      return out;
    };
    const raw = new Uint8Array(64);
    raw.set(fix(r), 0);
    raw.set(fix(s), 32);
    return raw;
  }
  function pemToDer(pem) {
    const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  }
  async function fetchBytes(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }

  const keys = new Map();
  async function keyFor(url) {
    if (!keys.has(url)) {
      keys.set(url, (async () => {
        const der = pemToDer(new TextDecoder().decode(await fetchBytes(url)));
        const spki = spkiOf(der);
        return {
          keyId: await sha256(spki),
          key: await crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]),
        };
      })());
    }
    return keys.get(url);
  }

  // A segment's signed manifest: signature by the device certificate's key, key_id, sequence, and the
  // chain link to the previous manifest (its SHA-256, or null when it cannot be checked here).
  async function manifest(seg, previousManifestSha256) {
    const problems = [];
    const manifestBytes = await fetchBytes(seg.manifest_url);
    const sig = await fetchBytes(seg.signature_url);
    const doc = JSON.parse(new TextDecoder().decode(manifestBytes));
    const manifestSha256 = await sha256(manifestBytes);
    const { keyId, key } = await keyFor(seg.certificate_url);
    if (doc.key_id !== keyId) problems.push("manifest key_id is not the device certificate's key");
    let sigOk = false;
    try {
      sigOk = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, derToRaw(sig), manifestBytes);
    } catch (e) { sigOk = false; }
    if (!sigOk) problems.push("manifest signature invalid (manifest altered or not signed by this camera)");
    if (doc.sequence !== seg.sequence) problems.push(`manifest is of sequence ${doc.sequence}, not ${seg.sequence}`);
    if (previousManifestSha256 !== null && doc.previous_manifest_sha256 !== previousManifestSha256) {
      problems.push("chain broken: previous_manifest_sha256 is not the SHA-256 of the previous manifest");
    }
    return { problems, manifestSha256, doc };
  }

  // The very bytes the player appends (or, for a segment not played, fetched just to check) against the
  // signed manifest's hash and size.
  async function media(doc, bytes) {
    const problems = [];
    if ((await sha256(bytes)) !== doc.media.sha256) problems.push("SHA-256 of the played video differs from the signed manifest (video altered)");
    if (bytes.byteLength !== doc.media.size) problems.push(`video is ${bytes.byteLength} bytes, the manifest says ${doc.media.size}`);
    return problems;
  }

  async function previousManifestHash(url) {
    if (!url) return null;
    return sha256(await fetchBytes(url));
  }

  return { manifest, media, previousManifestHash, sha256, fetchBytes };
})();
