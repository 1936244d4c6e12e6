// Drives @octokit/rest or @actions/github's getOctokit through the conformance operations
// (compare.py OPS) and prints {op: {status, headers, body} | {error}} as JSON.
// Usage: node driver.mjs '{"client":"octokit"|"actions","base":URL,"token":T,...}'
import { Octokit } from "@octokit/rest";
import { getOctokit } from "@actions/github";

const cfg = JSON.parse(process.argv[2]);
const { owner, repo, perPage: per_page, name } = cfg;
const make = (token) =>
  cfg.client === "actions"
    ? getOctokit(token, { baseUrl: cfg.base })
    : new Octokit({ baseUrl: cfg.base, auth: token, log: { warn() {}, info() {}, debug() {}, error() {} } });
const octokit = make(cfg.token);

const seen = (r, body) => ({ status: r.status, headers: r.headers, body: body === undefined ? r.data : body });
// Octokit throws on 304 and on errors; the response it carries is what the client saw.
const failed = async (call) => {
  try {
    return seen(await call());
  } catch (err) {
    if (err.status === undefined) throw err;
    const r = err.response ?? { status: err.status, headers: {}, data: null };
    return { status: r.status, headers: r.headers, body: r.data === "" ? null : r.data };
  }
};
const numbers = async () =>
  (await octokit.paginate(octokit.rest.issues.listForRepo, { owner, repo, per_page })).map((i) => i.number);

const ops = {
  async get_repo() {
    return seen(await octokit.rest.repos.get({ owner, repo }));
  },
  async paginate() {
    // paginate follows rel="next" as GitHub wrote it
    const first = await octokit.rest.issues.listForRepo({ owner, repo, per_page });
    return seen(first, { numbers: await numbers() });
  },
  async lazy_load() {
    const issue = (await octokit.rest.issues.get({ owner, repo, issue_number: 7 })).data;
    return seen(await octokit.request({ method: "GET", url: issue.user.url }));
  },
  async conditional() {
    const etag = (await octokit.rest.repos.get({ owner, repo })).headers.etag;
    const again = await failed(() => octokit.rest.repos.get({ owner, repo, headers: { "if-none-match": etag } }));
    return { ...again, body: null };
  },
  async write_read() {
    const made = await octokit.rest.issues.create({ owner, repo, title: "Conformance", body: `Written by ${name}` });
    const issue = made.data;
    const created = { number: issue.number, title: issue.title, user: issue.user.login, url: issue.url };
    const read = (await octokit.rest.issues.get({ owner, repo, issue_number: issue.number })).data.title;
    return seen(made, { created, read_back: read, listed: await numbers() });
  },
  async head() {
    return seen(await octokit.request("HEAD /repos/{owner}/{repo}", { owner, repo }), null);
  },
  async not_found() {
    return failed(() => octokit.rest.repos.get({ owner, repo: "missing-repo" }));
  },
  async whoami() {
    return failed(() => octokit.rest.users.getAuthenticated());
  },
  async private_repo() {
    return failed(() => octokit.rest.issues.get({ owner, repo: cfg.fleetOnly, issue_number: 1 }));
  },
  async bad_token() {
    return failed(() => make(cfg.badToken).rest.issues.get({ owner, repo, issue_number: 1 }));
  },
  async rate_limit() {
    const r1 = (await octokit.rest.rateLimit.get()).data;
    await octokit.rest.users.getByUsername({ username: `probe-${name}` });
    const r2 = await octokit.rest.rateLimit.get();
    const search = await octokit.request("GET /search/issues", { q: `repo:${owner}/${repo}` });
    const core = await octokit.rest.repos.get({ owner, repo });
    return seen(r2, {
      resources: Object.keys(r1.resources).sort(),
      core_limit: r1.resources.core.limit,
      search_limit: r1.resources.search.limit,
      core_used_delta: r2.data.resources.core.used - r1.resources.core.used,
      search_resource: search.headers["x-ratelimit-resource"],
      search_limit_header: search.headers["x-ratelimit-limit"],
      core_after: [core.headers["x-ratelimit-resource"], core.headers["x-ratelimit-limit"]],
    });
  },
};
if (cfg.client !== "actions") {
  // getOctokit insists on a token, so only plain Octokit can write anonymously.
  ops.anonymous_write = async () =>
    failed(() => new Octokit({ baseUrl: cfg.base }).rest.issues.create({ owner, repo, title: "anonymous" }));
}

const out = {};
for (const [op, fn] of Object.entries(ops)) {
  try {
    out[op] = await fn();
  } catch (err) {
    out[op] = { error: `${err.name}: ${String(err.message).slice(0, 300)}` };
  }
}
process.stdout.write(JSON.stringify(out));
