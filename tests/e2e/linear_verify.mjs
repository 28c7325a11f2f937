// Asks Linear's own webhook client (@linear/sdk) which deliveries it accepts, for
// tests/linear_signing.rs: `node linear_verify.mjs CASES.json SECRET` prints one boolean per case.
import { readFileSync } from "node:fs";
import { LinearWebhookClient } from "@linear/sdk/webhooks";

const [casesFile, secret] = process.argv.slice(2);
const client = new LinearWebhookClient(secret);
const answers = JSON.parse(readFileSync(casesFile, "utf8")).map(({ body, signature }) => {
  try {
    return client.verify(Buffer.from(body, "base64"), signature) === true;
  } catch {
    return false;
  }
});
console.log(JSON.stringify(answers));
