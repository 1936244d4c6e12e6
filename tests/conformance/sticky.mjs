// The sticky-comment pattern of comment actions, with @octokit/rest: list the issue's
// comments, find ours (our login and a marker), update it, or else create it. Prints
// {"action": "created"|"updated", "id": N} as JSON.
// Usage: node sticky.mjs '{"base":URL,"token":T,"owner":O,"repo":R,"issue":N,"marker":M,"body":B}'
import { Octokit } from "@octokit/rest";

const cfg = JSON.parse(process.argv[2]);
const { owner, repo, issue: issue_number, marker } = cfg;
const octokit = new Octokit({ baseUrl: cfg.base, auth: cfg.token,
  log: { warn() {}, info() {}, debug() {}, error() {} } });
const me = (await octokit.rest.users.getAuthenticated()).data.login;
const comments = await octokit.paginate(octokit.rest.issues.listComments,
  { owner, repo, issue_number, per_page: 100 });
const ours = comments.find((c) => c.user.login === me && c.body.includes(marker));
const body = `${marker}\n${cfg.body}`;
if (ours) {
  await octokit.rest.issues.updateComment({ owner, repo, comment_id: ours.id, body });
  console.log(JSON.stringify({ action: "updated", id: ours.id }));
} else {
  const made = await octokit.rest.issues.createComment({ owner, repo, issue_number, body });
  console.log(JSON.stringify({ action: "created", id: made.data.id }));
}
