// @azure/msal-node as its documentation shows for a daemon: a ConfidentialClientApplication with
// a client secret or a certificate, acquireTokenByClientCredential for a /.default scope. The one
// knob: the authority is the emulator, named in knownAuthorities so msal-node does not ask
// login.microsoftonline.com for instance discovery. The emulator's CA is trusted through
// NODE_EXTRA_CA_CERTS. Prints the result (or the error) as one JSON line.
import { readFileSync } from "node:fs";
import { ConfidentialClientApplication } from "@azure/msal-node";

const env = process.env;
const authority = `${env.EMULATOR_BASE_URL}/${env.TENANT}`;
const auth = {
  clientId: env.CLIENT_ID,
  authority,
  knownAuthorities: [new URL(env.EMULATOR_BASE_URL).host],
};
if (env.CLIENT_SECRET) {
  auth.clientSecret = env.CLIENT_SECRET;
} else {
  auth.clientCertificate = {
    thumbprintSha256: env.CERT_SHA256,
    privateKey: readFileSync(env.KEY_FILE, "utf8"),
    x5c: env.X5C_FILE ? readFileSync(env.X5C_FILE, "utf8") : undefined,
  };
}
const app = new ConfidentialClientApplication({ auth });
try {
  const r = await app.acquireTokenByClientCredential({ scopes: [env.SCOPE] });
  console.log(JSON.stringify({ ok: true, token: r.accessToken, expiresOn: r.expiresOn, fromCache: r.fromCache }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, errorCode: e.errorCode, message: String(e.errorMessage || e.message) }));
}
