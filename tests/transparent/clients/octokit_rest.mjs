// @octokit/rest (ESM, global fetch), default base URL.
import { Octokit } from "/opt/clients/node_modules/@octokit/rest/dist-src/index.js";
const [owner, repo] = process.argv[2].split("/");
try {
  const r = await new Octokit({ auth: process.env.GITHUB_TOKEN }).rest.repos.get({ owner, repo });
  console.log(JSON.stringify({ status: r.status, cache: r.headers["x-p2p-cache"] || null,
                               name: r.data.full_name, url: r.url }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e.message || e) + " " + String(e.cause || "") }));
  process.exit(1);
}
