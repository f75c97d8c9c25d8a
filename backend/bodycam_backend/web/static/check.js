// The browser's own integrity check (docs/review.md): SHA-256 of the very bytes it plays, the device's
// ECDSA P-256 signature over each manifest (key taken from the device certificate), the device
// certificate's ECDSA P-256 / SHA-256 signature by the agency CA (whose certificate comes from the same
// server: its SHA-256 fingerprint is shown, and pinned in this browser, for the reviewer to compare with
// the one the agency publishes), and the chain link from each manifest to the previous one. Nothing here
// trusts the server's own verdict.
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
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
  function certParts(certDer) {
    const cert = tlv(certDer, 0);
    const [tbs, alg, sigBits] = children(certDer, cert);
    let fields = children(certDer, tbs);
    if (fields[0].tag === 0xa0) fields = fields.slice(1); // [0] version
    // serial, signature, issuer, validity, subject, subjectPublicKeyInfo
    const part = (n) => certDer.slice(n.start, n.end);
    return {
      tbs: part(tbs), alg: certDer.slice(children(certDer, alg)[0].start, children(certDer, alg)[0].end),
      signature: certDer.slice(sigBits.body + 1, sigBits.end), // first byte: unused bits (0)
      issuer: part(fields[2]), subject: part(fields[4]), spki: part(fields[5]),
    };
  }
    const ECDSA_SHA256 = "06082a8648ce3d040302"; // OID 1.2.840.10045.4.3.2, DER
  const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // The agency CA from the server, once per page: its key, subject and fingerprint, and whether this
  // browser saw a different CA before (a first-seen pin in localStorage).
  const cas = new Map();
  function caFrom(url) {
    if (!cas.has(url)) {
      cas.set(url, (async () => {
        const der = pemToDer(new TextDecoder().decode(await fetchBytes(url)));
        const parts = certParts(der);
        const fingerprint = (await sha256(der)).match(/../g).join(":").toUpperCase();
        let pinned = null;
        try {
          pinned = localStorage.getItem("bodycam.ca.sha256");
          if (pinned === null) localStorage.setItem("bodycam.ca.sha256", fingerprint);
        } catch (e) { pinned = null; }
        return {
          fingerprint, pinned, subject: parts.subject,
          key: await crypto.subtle.importKey("spki", parts.spki, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]),
        };
      })());
    }
    return cas.get(url);
  }

  // Problems with a device certificate against the agency CA: its issuer is the CA's subject, and the CA's
  // key signed its TBSCertificate (ECDSA P-256 with SHA-256).
  async function issuedBy(parts, caUrl) {
    const ca = await caFrom(caUrl);
    const problems = [];
    if (ca.pinned !== null && ca.pinned !== ca.fingerprint) {
      problems.push(`the agency CA the server sent (SHA-256 ${ca.fingerprint}) is not the one this browser saw before (${ca.pinned})`);
    }
    if (hex(parts.alg) !== ECDSA_SHA256) problems.push("device certificate is not signed with ECDSA / SHA-256");
    if (!same(parts.issuer, ca.subject)) problems.push("device certificate was not issued by the agency CA (issuer differs)");
    let ok = false;
    try {
      ok = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, ca.key, derToRaw(parts.signature), parts.tbs);
    } catch (e) { ok = false; }
    if (!ok) problems.push("device certificate is not signed by the agency CA");
    return problems;
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
  async function keyFor(url, caUrl) {
    if (!keys.has(url)) {
      keys.set(url, (async () => {
        const der = pemToDer(new TextDecoder().decode(await fetchBytes(url)));
        const parts = certParts(der);
        const spki = parts.spki;
        return {
          keyId: await sha256(spki),
          key: await crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]),
          certProblems: caUrl ? await issuedBy(parts, caUrl) : ["no agency CA to check the device certificate against"],
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
    const { keyId, key, certProblems } = await keyFor(seg.certificate_url, seg.ca_url);
    problems.push(...certProblems);
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

  return { manifest, media, previousManifestHash, sha256, fetchBytes, ca: caFrom };
})();
