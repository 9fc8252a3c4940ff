// The audit log (admin role): filters, pages, one row per entry.

import { $, cell, clear, h } from "./dom.js";
import { dateTime, shortId } from "./format.js";

export class AuditView {
  /** @param {import("./api.js").Api} api */
  constructor(api, ctx) {
    this.api = api;
    this.ctx = ctx;
    this.filters = {};
    this.page = 1;
    this.pages = 1;
  }

  bind() {
    const form = $("#audit-filters");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.filters = readFilters(form);
      this.page = 1;
      this.load();
    });
    form.addEventListener("change", (e) => {
      if (e.target.tagName === "SELECT") form.requestSubmit();
    });
    form.addEventListener("reset", () => {
      this.filters = {};
      this.page = 1;
      setTimeout(() => this.load()); // after the browser cleared the fields
    });
    $("#audit-pager").addEventListener("click", (e) => {
      const which = e.target.closest("button")?.dataset.page;
      if (!which) return;
      this.page = Math.min(this.pages, Math.max(1, this.page + (which === "next" ? 1 : -1)));
      this.load();
    });
  }

  reset() {
    clear($("#audit-body"));
    $("#audit-filters").reset();
    this.filters = {};
    this.page = 1;
  }

  async load() {
    try {
      const data = await this.api.get("/audit-logs", { ...this.filters, page: this.page, limit: 25 });
      this.render(data);
    } catch (error) {
      this.ctx.fail(error);
    }
  }

  render(data) {
    const body = clear($("#audit-body"));
    body.append(...data.logs.map(row));
    $("#audit-empty").hidden = data.logs.length > 0;
    const { page, pages, total } = data.pagination;
    this.pages = Math.max(1, pages);
    const pager = $("#audit-pager");
    pager.querySelector('[data-part="label"]').textContent =
      `Page ${page} of ${this.pages} · ${total} entr${total === 1 ? "y" : "ies"}`;
    pager.querySelector('[data-page="prev"]').disabled = page <= 1;
    pager.querySelector('[data-page="next"]').disabled = page >= this.pages;
  }
}

function readFilters(form) {
  const filters = {};
  for (const name of ["action", "outcome", "resourceId", "adminId"]) {
    const value = form.elements[name].value.trim();
    if (value) filters[name] = value;
  }
  for (const name of ["since", "until"]) {
    const value = form.elements[name].value; // local time, as the operator typed it
    if (value) filters[name] = new Date(value).toISOString();
  }
  return filters;
}

function row(entry) {
  const admin = entry.adminId ? shortId(entry.adminId) : (entry.details?.osUser ? `os:${entry.details.osUser}` : "—");
  return h("tr", { dataset: { action: entry.action, outcome: entry.outcome } },
    cell("th", "Time", { scope: "row" }, dateTime(entry.createdAt, { seconds: true })),
    cell("td", "Action", {}, entry.action),
    cell("td", "Outcome", {}, h("span", { class: `badge ${entry.outcome}` }, entry.outcome.toUpperCase())),
    cell("td", "Admin", { class: "mono", title: entry.adminId || "" }, admin),
    cell("td", "Resource", { class: "mono", title: entry.resourceId || "" }, entry.resourceId ? shortId(entry.resourceId) : "—"),
    cell("td", "Details", { class: "details" }, describe(entry)),
    cell("td", "Request id", { class: "mono", title: entry.requestId || "" }, entry.requestId ? shortId(entry.requestId) : "—"),
  );
}

/** The entry's details and error as "key: value" text (never raw JSON blocks). */
function describe(entry) {
  const parts = [];
  for (const [key, value] of Object.entries(entry.details || {})) {
    if (value === null || value === undefined || key === "osUser") continue;
    parts.push(`${key}: ${typeof value === "object" ? summarize(value) : idLike(value)}`);
  }
  const lines = [parts.join(" · ")];
  if (entry.error) {
    const e = entry.error;
    lines.push(h("span", { class: "sub" }, `Error ${e.status ?? ""} ${e.code ?? ""}: ${e.message ?? ""}`.trim()));
  }
  return lines;
}

const ID = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64})$/i;

/** Ids and checksums shortened (the full value is one filter away); anything else as it is. */
function idLike(value) {
  return typeof value === "string" && ID.test(value) ? `${value.slice(0, 8)}…` : value;
}

function summarize(value) {
  if (Array.isArray(value)) return value.length ? value.map((v) => (typeof v === "string" ? idLike(v) : "…")).join(", ") : "none";
  const keys = Object.keys(value);
  return keys.length ? `${keys.length} item${keys.length === 1 ? "" : "s"}` : "none";
}
