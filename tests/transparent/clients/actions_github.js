// What actions/github-script does: getOctokit(token) from @actions/github, default base URL
// (GITHUB_API_URL unset -> https://api.github.com). Prints status, X-P2P-Cache, full_name.
const github = require("/opt/clients/node_modules/@actions/github");
const [owner, repo] = process.argv[2].split("/");
github.getOctokit(process.env.GITHUB_TOKEN).rest.repos.get({ owner, repo }).then(
  (r) => console.log(JSON.stringify({ status: r.status, cache: r.headers["x-p2p-cache"] || null,
                                      name: r.data.full_name, url: r.url })),
  (e) => { console.log(JSON.stringify({ error: String(e.message || e) })); process.exit(1); });
