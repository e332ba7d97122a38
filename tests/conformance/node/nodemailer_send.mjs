// nodemailer as its documentation shows for Office 365 with OAuth2 (SMTP submission on port 587
// with STARTTLS, auth type OAuth2 with an access token from msal-node). The knobs: host and port
// of the emulator's SMTP, and its CA. Prints the result (or the error) as one JSON line.
import { readFileSync } from "node:fs";
import nodemailer from "nodemailer";
import { ConfidentialClientApplication } from "@azure/msal-node";

const env = process.env;
const app = new ConfidentialClientApplication({
  auth: {
    clientId: env.CLIENT_ID,
    clientSecret: env.CLIENT_SECRET,
    authority: `${env.EMULATOR_BASE_URL}/${env.TENANT}`,
    knownAuthorities: [new URL(env.EMULATOR_BASE_URL).host],
  },
});
const { accessToken } = await app.acquireTokenByClientCredential({
  scopes: ["https://outlook.office365.com/.default"],
});
const [host, port] = env.SMTP_ADDR.split(":");
const transport = nodemailer.createTransport({
  host,
  port: Number(port),
  secure: false,
  requireTLS: true,
  tls: { ca: readFileSync(env.CA_FILE), servername: "localhost" },
  auth: { type: "OAuth2", user: env.SENDER, accessToken },
});
try {
  const info = await transport.sendMail({
    from: env.SENDER,
    to: env.RECIPIENT,
    subject: env.SUBJECT,
    text: "Sent by nodemailer through the emulator.",
  });
  console.log(JSON.stringify({ ok: true, response: info.response, accepted: info.accepted, rejected: info.rejected }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, code: e.code, responseCode: e.responseCode, response: e.response }));
}
