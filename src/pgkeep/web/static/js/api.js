// The admin API client: the bearer token, JSON in and out, problem+json turned into sentences.
// The token lives in sessionStorage (this tab only, gone when it closes) and never in a cookie:
// the browser then cannot be made to send it by another site, so there is nothing to forge.

const TOKEN_KEY = "pgkeep.token";

export const session = {
  token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  remember(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  forget() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** An API refusal or failure, with a message fit to show an operator as it is. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(describeProblem(status, problem));
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code || null;
  }
}

/** One readable paragraph from an RFC 9457 problem: what, why, what to do, and the request id. */
export function describeProblem(status, problem) {
  if (!problem || typeof problem !== "object") {
    return status ? `The server answered ${status} without an explanation.` : "The server cannot be reached.";
  }
  const lines = [];
  const detail = typeof problem.detail === "string" ? problem.detail : "";
  const title = typeof problem.title === "string" ? problem.title : "";
  lines.push(sentence(detail || title || `The request failed (${status}).`));
  if (Array.isArray(problem.errors)) {
    for (const e of problem.errors.slice(0, 5)) {
      const where = [e.location, e.field].filter(Boolean).join(" ");
      lines.push(`• ${where ? where + ": " : ""}${e.message || "invalid"}`);
    }
  }
  if (typeof problem.hint === "string" && problem.hint) lines.push(`What to do: ${problem.hint}`);
  if (problem.requestId) lines.push(`(request id ${problem.requestId})`);
  return lines.join("\n");
}

function sentence(text) {
  const t = text.trim();
  if (!t) return t;
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?)]$/.test(first) ? first : first + ".";
}

export class Api {
  /**
   * @param {string} prefix where the admin routes are mounted, e.g. "/api/admin"
   * @param {{onUnauthorized?: (err: ApiError) => void}} hooks
   */
  constructor(prefix, hooks = {}) {
    this.prefix = prefix;
    this.hooks = hooks;
  }

  /** Call the API; resolves to {status, data, location}, rejects with ApiError. */
  async request(method, path, { query, body, async: respondAsync = false } = {}) {
    const token = session.token();
    const headers = { Accept: "application/json, application/problem+json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (respondAsync) headers.Prefer = "respond-async";
    const url = path.startsWith(this.prefix) ? path : this.prefix + path;
    let response;
    try {
      response = await fetch(url + queryString(query), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new ApiError(0, {
        title: "The server cannot be reached",
        detail: "the pgkeep server cannot be reached",
        hint: "check that `pgkeep serve` is running and the network is up, then try again",
      });
    }
    const data = await readBody(response);
    if (!response.ok) {
      const problem = data && typeof data === "object" ? data : {
        title: response.statusText,
        detail: `the server answered ${response.status} ${response.statusText}`.trim(),
      };
      const error = new ApiError(response.status, problem);
      if (response.status === 401 && this.hooks.onUnauthorized) this.hooks.onUnauthorized(error);
      throw error;
    }
    return { status: response.status, data, location: response.headers.get("Location") };
  }

  get(path, query) {
    return this.request("GET", path, { query }).then((r) => r.data);
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }
  return null; // HTML from a proxy, say: never shown raw
}

function queryString(query) {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : "";
}

const RANKS = { viewer: 0, operator: 1, admin: 2 };

/** Whether `role` includes the rights of `needed` (viewer < operator < admin). */
export function allows(role, needed) {
  return (RANKS[role] ?? -1) >= (RANKS[needed] ?? 99);
}
