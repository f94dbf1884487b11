// Provider keys are encrypted in the browser (spec §3.6): the form posts only an envelope.
//
// A fresh AES-256-GCM key encrypts the secret; the gateway's RSA public key (RSA-OAEP, SHA-256)
// wraps that AES key. The envelope is exactly what odock.providers.crypto.EnvelopeDecrypter opens:
//   {v: 1, alg: "RSA-OAEP-256/A256GCM", keyId, wrappedKey, iv, ciphertext}   (base64 values)
// where ciphertext is WebCrypto's AES-GCM output (the 16-byte tag appended), iv 12 random bytes.
// Used by <form data-prepare="provider-key" data-encryption-key="/api/.../encryption-key">.
"use strict";
(function () {
  const Odock = (window.Odock = window.Odock || {});
  Odock.prepare = Odock.prepare || {};
  const ALGORITHM = "RSA-OAEP-256/A256GCM";

  function toBase64(bytes) {
    const view = new Uint8Array(bytes);
    let text = "";
    for (let i = 0; i < view.length; i++) text += String.fromCharCode(view[i]);
    return btoa(text);
  }

  function pemBody(pem) {
    const base64 = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
    const raw = atob(base64);
    const der = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) der[i] = raw.charCodeAt(i);
    return der.buffer;
  }

  // Encrypt `secret` to the RSA public key `publicPem` (SPKI PEM) known as `keyId`.
  Odock.sealEnvelope = async function (secret, publicPem, keyId) {
    const subtle = window.crypto && window.crypto.subtle;
    if (!subtle) throw new Error("This browser cannot encrypt here: open the console over HTTPS (or on localhost).");
    const wrapping = await subtle.importKey("spki", pemBody(publicPem), { name: "RSA-OAEP", hash: "SHA-256" }, false, ["encrypt"]);
    const dataKey = await subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt"]);
    const iv = window.crypto.getRandomValues(new Uint8Array(12));
    const ciphertext = await subtle.encrypt({ name: "AES-GCM", iv: iv }, dataKey, new TextEncoder().encode(secret));
    const rawKey = await subtle.exportKey("raw", dataKey);
    const wrappedKey = await subtle.encrypt({ name: "RSA-OAEP" }, wrapping, rawKey);
    return { v: 1, alg: ALGORITHM, keyId: keyId, wrappedKey: toBase64(wrappedKey), iv: toBase64(iv), ciphertext: toBase64(ciphertext) };
  };

  // The form's body with `secret` replaced by its envelope (the plaintext leaves no trace in it).
  Odock.prepare["provider-key"] = async function (form, body) {
    const secret = body.secret;
    delete body.secret;
    if (!secret) throw new Error("Enter the secret key.");
    const answer = await Odock.api("GET", form.dataset.encryptionKey);
    if (!answer.ok || !answer.body || !answer.body.configured) {
      throw new Error("The gateway has no provider-key encryption pair: a provider key cannot be stored.");
    }
    if (answer.body.algorithm !== ALGORITHM) throw new Error("The gateway expects " + answer.body.algorithm + ", which this page cannot make.");
    body.envelope = await Odock.sealEnvelope(secret, answer.body.public_key_pem, answer.body.key_id);
    return body;
  };
})();
