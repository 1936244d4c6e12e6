"""The real clients, each driven through the same operations (compare.OPS).

Every driver takes a `Target` (where the client is pointed, with which token) and returns
``{op: observation}``; an observation is what the client itself exposes: the status, the
body as it parsed it, the response headers it shows. One failing operation is recorded as
``{"error": ...}`` and the rest still run, so a table can show every cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

OWNER, REPO = "octo", "conform"
FULL = f"{OWNER}/{REPO}"
# Identity: a private repository only the fleet's token reads, a token GitHub refuses, and
# the login GitHub gives the client's token (conftest.py sets them up).
FLEET_ONLY = "fleetonly"
BAD_TOKEN = "ghp_conformancerevoked000000000000000000"
CLIENT_LOGIN = "conformance-client"
PER_PAGE = 40  # 95 issues: three pages, the last one short
HERE = Path(__file__).resolve().parent
TIMEOUT = 60


@dataclass(frozen=True)
class Target:
    base: str                 # the base URL the client is given (what its answers should name)
    token: str
    unix_socket: str = ""     # gh: the socket that plays api.github.com
    name: str = ""            # the client's name (a per-client probe login)


def _run_ops(ops: dict[str, Callable[[], dict]]) -> dict[str, dict]:
    seen = {}
    for op, fn in ops.items():
        try:
            seen[op] = fn()
        except Exception as exc:  # a client's failure is an observation, not a crash
            kind = type(exc).__name__
            if isinstance(exc, AssertionError):  # PyGithub's check of URLs GitHub named
                kind = "AssertionError (the client refused a URL off its base_url)"
            seen[op] = {"error": f"{kind}: {str(exc)[:300]}"}
    return seen


def _lower(headers: object) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}


def _rate_body(r1: dict, r2: dict, search_h: dict, core_h: dict) -> dict:
    """The rate-limit picture: buckets reported, how core moved over one uncached read,
    and which resource the search answer and the next core answer say they spent."""
    return {
        "resources": sorted(r1["resources"]),
        "core_limit": r1["resources"]["core"]["limit"],
        "search_limit": r1["resources"]["search"]["limit"],
        "core_used_delta": r2["resources"]["core"]["used"] - r1["resources"]["core"]["used"],
        "search_resource": search_h.get("x-ratelimit-resource"),
        "search_limit_header": search_h.get("x-ratelimit-limit"),
        "core_after": [core_h.get("x-ratelimit-resource"), core_h.get("x-ratelimit-limit")],
    }


# --------------------------------------------------------------------------- #
# PyGithub: Github(base_url=..., auth=Auth.Token(...))
# --------------------------------------------------------------------------- #

def pygithub(t: Target) -> dict[str, dict]:
    from github import Auth, Github, GithubException

    g = Github(base_url=t.base, auth=Auth.Token(t.token), per_page=PER_PAGE, retry=None)

    def get_repo():
        repo = g.get_repo(FULL)
        return {"status": 200, "body": repo.raw_data, "headers": _lower(repo.raw_headers)}

    def paginate():
        # PyGithub builds the list URL from the repo body's `url`, then follows Link.
        return {"status": 200, "body": {"numbers": [i.number for i in
                                                    g.get_repo(FULL).get_issues()]}}

    def lazy_load():
        repo = g.get_repo(FULL)
        issue = repo.get_issue(7)
        assert issue.user.name            # not in the issue's user: GET user.url
        assert repo.owner.followers >= 0  # not in the repo's owner: GET owner.url
        return {"status": 200, "body": issue.user.raw_data,
                "headers": _lower(issue.user.raw_headers)}

    def conditional():
        repo = g.get_repo(FULL)
        changed = repo.update()  # If-None-Match with the ETag of the answer above
        return {"status": 200 if changed else 304}

    def write_read():
        repo = g.get_repo(FULL)
        made = repo.create_issue(title="Conformance", body=f"Written by {t.name}")
        created = {"number": made.number, "title": made.title, "user": made.user.login,
                   "url": made.url}
        # PyGithub raises on any error status, so a created issue is GitHub's 201.
        return {"status": 201, "headers": _lower(made.raw_headers), "body": {
            "created": created, "read_back": repo.get_issue(made.number).title,
            "listed": [i.number for i in repo.get_issues()]}}

    def head():
        status, headers, _ = g.requester.requestJson("HEAD", f"/repos/{FULL}")
        return {"status": status, "headers": _lower(headers)}

    def not_found():
        try:
            g.get_repo(f"{OWNER}/missing-repo")
        except GithubException as exc:
            return {"status": exc.status, "body": exc.data, "headers": _lower(exc.headers)}
        return {"status": 200}

    def anonymous_write():
        anon = Github(base_url=t.base, retry=None, lazy=True)
        try:
            anon.get_repo(FULL).create_issue(title="anonymous")
        except GithubException as exc:
            return {"status": exc.status, "body": exc.data, "headers": _lower(exc.headers)}
        return {"status": 201}

    def refused(call) -> dict:
        try:
            headers, data = call()
        except GithubException as exc:
            return {"status": exc.status, "body": exc.data, "headers": _lower(exc.headers)}
        return {"status": 200, "body": data, "headers": _lower(headers)}

    def whoami():
        return refused(lambda: g.requester.requestJsonAndCheck("GET", "/user"))

    def private_repo():
        return refused(lambda: g.requester.requestJsonAndCheck(
            "GET", f"/repos/{OWNER}/{FLEET_ONLY}/issues/1"))

    def bad_token():
        bad = Github(base_url=t.base, auth=Auth.Token(BAD_TOKEN), retry=None)
        return refused(lambda: bad.requester.requestJsonAndCheck(
            "GET", f"/repos/{FULL}/issues/1"))

    def rate_limit():
        r1 = g.get_rate_limit()
        g.get_user(f"probe-{t.name}")  # one uncached read
        r2 = g.get_rate_limit()
        search_h, _ = g.requester.requestJsonAndCheck("GET", "/search/issues",
                                                      parameters={"q": f"repo:{FULL}"})
        core_h, _ = g.requester.requestJsonAndCheck("GET", f"/repos/{FULL}")
        return {"status": 200, "headers": _lower(r2.raw_headers),
                "body": _rate_body(r1.raw_data, r2.raw_data, _lower(search_h), _lower(core_h))}

    return _run_ops(locals_ops(locals()))


def locals_ops(scope: dict) -> dict[str, Callable[[], dict]]:
    from .compare import OPS

    return {op: scope[op] for op in OPS if op in scope}


# --------------------------------------------------------------------------- #
# githubkit: GitHub(token, base_url=...)
# --------------------------------------------------------------------------- #

GITHUBKIT_PYTHON = HERE / ".venv-githubkit" / "bin" / "python"


def githubkit(t: Target) -> dict[str, dict]:
    """githubkit_ops, run by the python of githubkit's own venv (tests/conformance/setup.sh)."""
    done = subprocess.run(
        [str(GITHUBKIT_PYTHON), "-c", "import json, sys\n"
         "from conformance.clients import Target, githubkit_ops\n"
         "print(json.dumps(githubkit_ops(Target(**json.loads(sys.argv[1])))))",
         json.dumps(t.__dict__)], capture_output=True, text=True, timeout=TIMEOUT * 3,
        cwd=HERE.parent)
    if done.returncode != 0:
        raise RuntimeError(f"githubkit driver exited {done.returncode}: {done.stderr[-800:]}")
    return json.loads(done.stdout)


def githubkit_ops(t: Target) -> dict[str, dict]:
    from githubkit import GitHub
    from githubkit.compat import model_dump
    from githubkit.exception import RequestFailed

    # http_cache off: githubkit's own cache would answer repeats itself and hide what
    # the server said.
    gh = GitHub(t.token, base_url=t.base, http_cache=False, auto_retry=False)

    def seen(r, body=None) -> dict:
        return {"status": r.status_code, "headers": _lower(r.headers),
                "body": model_dump(r.parsed_data) if body is None else body}

    def issue_numbers() -> list[int]:
        return [i.number for i in gh.rest.paginate(gh.rest.issues.list_for_repo, owner=OWNER,
                                                   repo=REPO, per_page=PER_PAGE)]

    def get_repo():
        return json.loads(json.dumps(seen(gh.rest.repos.get(OWNER, REPO)), default=str))

    def paginate():
        first = gh.rest.issues.list_for_repo(OWNER, REPO, per_page=PER_PAGE)
        return seen(first, {"numbers": issue_numbers()})

    def lazy_load():
        issue = gh.rest.issues.get(OWNER, REPO, 7).parsed_data
        user = gh.request("GET", issue.user.url)  # the URL as GitHub named it
        return seen(user, user.json())

    def conditional():
        etag = gh.rest.repos.get(OWNER, REPO).headers["etag"]
        again = gh.rest.repos.get(OWNER, REPO, headers={"If-None-Match": etag})
        return seen(again, {})

    def write_read():
        made = gh.rest.issues.create(OWNER, REPO, title="Conformance",
                                     body=f"Written by {t.name}")
        issue = made.parsed_data
        created = {"number": issue.number, "title": issue.title, "user": issue.user.login,
                   "url": issue.url}
        read = gh.rest.issues.get(OWNER, REPO, issue.number).parsed_data.title
        return seen(made, {"created": created, "read_back": read, "listed": issue_numbers()})

    def head():
        return seen(gh.request("HEAD", f"/repos/{FULL}"), {})

    def failed(call, parse: bool = False) -> dict:
        try:
            r = call()
        except RequestFailed as exc:
            return seen(exc.response, exc.response.json())
        return seen(r, r.json() if parse else {})

    def not_found():
        return failed(lambda: gh.rest.repos.get(OWNER, "missing-repo"))

    def anonymous_write():
        anon = GitHub(base_url=t.base, http_cache=False, auto_retry=False)
        return failed(lambda: anon.rest.issues.create(OWNER, REPO, title="anonymous"))

    def whoami():
        return failed(lambda: gh.request("GET", "/user"), parse=True)

    def private_repo():
        return failed(lambda: gh.rest.issues.get(OWNER, FLEET_ONLY, 1))

    def bad_token():
        bad = GitHub(BAD_TOKEN, base_url=t.base, http_cache=False, auto_retry=False)
        return failed(lambda: bad.rest.issues.get(OWNER, REPO, 1))

    def rate_limit():
        r1 = gh.rest.rate_limit.get()
        gh.rest.users.get_by_username(f"probe-{t.name}")
        r2 = gh.rest.rate_limit.get()
        search = gh.request("GET", "/search/issues", params={"q": f"repo:{FULL}"})
        core = gh.rest.repos.get(OWNER, REPO)
        return seen(r2, _rate_body(r1.json(), r2.json(), _lower(search.headers),
                                   _lower(core.headers)))

    return _run_ops(locals_ops(locals()))


# --------------------------------------------------------------------------- #
# @octokit/rest and @actions/github getOctokit, under Node (driver.mjs)
# --------------------------------------------------------------------------- #

def javascript(client: str) -> Callable[[Target], dict[str, dict]]:
    def run(t: Target) -> dict[str, dict]:
        config = {"client": client, "base": t.base, "token": t.token, "name": t.name,
                  "owner": OWNER, "repo": REPO, "perPage": PER_PAGE,
                  "fleetOnly": FLEET_ONLY, "badToken": BAD_TOKEN}
        done = subprocess.run(["node", str(HERE / "driver.mjs"), json.dumps(config)],
                              capture_output=True, text=True, timeout=TIMEOUT * 3, cwd=HERE)
        if done.returncode != 0:
            raise RuntimeError(f"driver.mjs exited {done.returncode}: {done.stderr[-800:]}")
        return json.loads(done.stdout)
    return run


# --------------------------------------------------------------------------- #
# gh: `gh api` over `http_unix_socket` (plain HTTP, Host: api.github.com)
# --------------------------------------------------------------------------- #

def gh(t: Target) -> dict[str, dict]:
    config_dir = tempfile.mkdtemp(prefix="gh-config-")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GH_", "GITHUB_")) and k not in ("HTTPS_PROXY", "HTTP_PROXY")}
    env.update({"GH_CONFIG_DIR": config_dir, "GH_TOKEN": t.token, "GH_NO_UPDATE_NOTIFIER": "1",
                "GH_PROMPT_DISABLED": "1", "NO_COLOR": "1"})
    subprocess.run(["gh", "config", "set", "http_unix_socket", t.unix_socket], env=env,
                   check=True, capture_output=True, timeout=TIMEOUT)

    def api(*args: str, token: str | None = None) -> dict:
        """`gh api -i ...` as an observation: the status line, headers, parsed body."""
        done = subprocess.run(["gh", "api", "-i", *args],
                              env={**env, "GH_TOKEN": token} if token else env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
        lines = head.splitlines()
        if not lines or not lines[0].startswith("HTTP/"):
            raise RuntimeError(f"gh api {' '.join(args)}: {done.stderr.strip()[:300]}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            parsed = json.loads(body) if body.strip() else None
        except ValueError:
            parsed = body
        return {"status": int(lines[0].split()[1]), "headers": headers, "body": parsed}

    def lines(*args: str) -> list[str]:
        done = subprocess.run(["gh", "api", *args], env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"gh api {' '.join(args)}: {done.stderr.strip()[:300]}")
        return done.stdout.split()

    def numbers() -> list[int]:
        return [int(n) for n in lines("--paginate", f"repos/{FULL}/issues?per_page={PER_PAGE}",
                                      "--jq", ".[].number")]

    def get_repo():
        return api(f"repos/{FULL}")

    def paginate():
        first = api(f"repos/{FULL}/issues?per_page={PER_PAGE}")
        return {**first, "body": {"numbers": numbers()}}

    def lazy_load():
        issue = api(f"repos/{FULL}/issues/7")
        return api(issue["body"]["user"]["url"])  # gh api takes GitHub's absolute URL

    def conditional():
        etag = api(f"repos/{FULL}")["headers"]["etag"]
        return {**api("-H", f"If-None-Match: {etag}", f"repos/{FULL}"), "body": None}

    def write_read():
        made = api("-X", "POST", f"repos/{FULL}/issues", "-f", "title=Conformance",
                   "-f", f"body=Written by {t.name}")
        issue = made["body"]
        created = {"number": issue["number"], "title": issue["title"],
                   "user": issue["user"]["login"], "url": issue["url"]}
        read = api(f"repos/{FULL}/issues/{issue['number']}")["body"]["title"]
        return {**made, "body": {"created": created, "read_back": read, "listed": numbers()}}

    def head():
        return {**api("-X", "HEAD", f"repos/{FULL}"), "body": None}

    def not_found():
        return api(f"repos/{OWNER}/missing-repo")

    # anonymous_write: gh refuses to run without a token, so it never sends one.

    def whoami():
        return api("user")

    def private_repo():
        return api(f"repos/{OWNER}/{FLEET_ONLY}/issues/1")

    def bad_token():
        return api(f"repos/{FULL}/issues/1", token=BAD_TOKEN)

    def rate_limit():
        r1 = api("rate_limit")
        api(f"users/probe-{t.name}")
        r2 = api("rate_limit")
        search = api(f"search/issues?q=repo:{FULL}")
        core = api(f"repos/{FULL}")
        return {**r2, "body": _rate_body(r1["body"], r2["body"], search["headers"],
                                         core["headers"])}

    return _run_ops(locals_ops(locals()))


# --------------------------------------------------------------------------- #
# curl, as a shell script would use it
# --------------------------------------------------------------------------- #

def curl(t: Target) -> dict[str, dict]:
    def call(url: str, *args: str, authed: bool = True, token: str | None = None) -> dict:
        auth = ["-H", f"Authorization: Bearer {token or t.token}"]
        head = "-I" in args  # curl -I writes the headers where the body would go
        if url.startswith("/"):
            url = t.base + url
        with tempfile.TemporaryDirectory() as tmp:
            hfile, bfile = Path(tmp, "h"), Path(tmp, "b")
            done = subprocess.run(
                ["curl", "-sS", "-D", str(hfile), "-o", str(bfile), "-w", "%{http_code}",
                 "-H", "Accept: application/vnd.github+json", *(auth if authed else []),
                 *args, url], capture_output=True, text=True, timeout=TIMEOUT)
            if done.returncode != 0:
                raise RuntimeError(f"curl {url}: {done.stderr.strip()[:300]}")
            blocks = hfile.read_text().replace("\r\n", "\n").strip().split("\n\n")
            headers = {}
            for line in blocks[-1].splitlines()[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            raw = bfile.read_bytes() if bfile.exists() and not head else b""
        body = json.loads(raw) if raw.strip() and "json" in headers.get("content-type", "") \
            else (raw.decode() or None)
        return {"status": int(done.stdout), "headers": headers, "body": body}

    def next_link(headers: dict) -> str | None:
        for part in headers.get("link", "").split(","):
            url, _, rel = part.partition(";")
            if 'rel="next"' in rel:
                return url.strip().strip("<>")
        return None

    def numbers() -> list[int]:
        out, url = [], f"/repos/{FULL}/issues?per_page={PER_PAGE}"
        while url:
            page = call(url)
            out += [i["number"] for i in page["body"]]
            url = next_link(page["headers"])
        return out

    def get_repo():
        return call(f"/repos/{FULL}")

    def paginate():
        first = call(f"/repos/{FULL}/issues?per_page={PER_PAGE}")
        return {**first, "body": {"numbers": numbers()}}

    def lazy_load():
        return call(call(f"/repos/{FULL}/issues/7")["body"]["user"]["url"])

    def conditional():
        etag = call(f"/repos/{FULL}")["headers"]["etag"]
        return call(f"/repos/{FULL}", "-H", f"If-None-Match: {etag}")

    def write_read():
        made = call(f"/repos/{FULL}/issues", "-X", "POST", "-H",
                    "Content-Type: application/json", "--data",
                    json.dumps({"title": "Conformance", "body": f"Written by {t.name}"}))
        issue = made["body"]
        created = {"number": issue["number"], "title": issue["title"],
                   "user": issue["user"]["login"], "url": issue["url"]}
        read = call(f"/repos/{FULL}/issues/{issue['number']}")["body"]["title"]
        return {**made, "body": {"created": created, "read_back": read, "listed": numbers()}}

    def head():
        return call(f"/repos/{FULL}", "-I")

    def not_found():
        return call(f"/repos/{OWNER}/missing-repo")

    def anonymous_write():
        return call(f"/repos/{FULL}/issues", "-X", "POST", "--data", '{"title":"anonymous"}',
                    authed=False)

    def whoami():
        return call("/user")

    def private_repo():
        return call(f"/repos/{OWNER}/{FLEET_ONLY}/issues/1")

    def bad_token():
        return call(f"/repos/{FULL}/issues/1", token=BAD_TOKEN)

    def rate_limit():
        r1 = call("/rate_limit")
        call(f"/users/probe-{t.name}")
        r2 = call("/rate_limit")
        search = call(f"/search/issues?q=repo:{FULL}")
        core = call(f"/repos/{FULL}")
        return {**r2, "body": _rate_body(r1["body"], r2["body"], search["headers"],
                                         core["headers"])}

    return _run_ops(locals_ops(locals()))

