// The backups table (filters, pages, row actions) and the size/duration charts.

import { allows } from "./api.js";
import { drawChart, niceBytes } from "./chart.js";
import { $, cell, clear, h } from "./dom.js";
import { bytes, dateTime, duration, shortId } from "./format.js";

const RUNNING = new Set(["IN_PROGRESS", "PENDING"]);
const SUCCEEDED = new Set(["COMPLETED", "EXPIRED", "DELETED"]);

export function describeBackup(b) {
  return `${b.type} backup ${shortId(b.id)} from ${dateTime(b.startedAt)}`;
}

export class BackupsView {
  /**
   * @param {import("./api.js").Api} api
   * @param {{role: () => string, actions: object, fail: (e: Error) => void}} ctx
   */
  constructor(api, ctx) {
    this.api = api;
    this.ctx = ctx;
    this.query = { page: 1, limit: 20, type: "", status: "" };
    this.pages = 1;
    this.known = new Map(); // id -> backup, for labelling plans and dialogs
    this.loading = null;
  }

  bind() {
    const form = $("#backup-filters");
    form.addEventListener("change", () => {
      this.query = { ...this.query, page: 1, type: form.type.value, status: form.status.value, limit: Number(form.limit.value) };
      this.load();
    });
    form.addEventListener("submit", (e) => e.preventDefault());
    $("#refresh").addEventListener("click", () => this.load());
    $("#backups-pager").addEventListener("click", (e) => {
      const which = e.target.closest("button")?.dataset.page;
      if (!which) return;
      this.query.page = Math.min(this.pages, Math.max(1, this.query.page + (which === "next" ? 1 : -1)));
      this.load();
    });
    $("#backups-body").addEventListener("click", (e) => {
      const button = e.target.closest("button[data-action]");
      if (!button) return;
      const backup = this.known.get(button.dataset.id);
      if (backup) this.ctx.actions.run(button.dataset.action, backup, button);
    });
  }

  reset() {
    clear($("#backups-body"));
    this.known.clear();
    this.query = { page: 1, limit: 20, type: "", status: "" };
    $("#backup-filters").reset();
  }

  /** Reload the table and the charts. A call during a reload queues one more (with the latest filters). */
  load() {
    this.again = true;
    if (!this.loading) {
      this.loading = (async () => {
        while (this.again) {
          this.again = false;
          try {
            await Promise.all([this.loadTable(), this.loadChart()]);
          } catch (error) {
            this.ctx.fail(error);
          }
        }
      })().finally(() => {
        this.loading = null;
      });
    }
    return this.loading;
  }

  async loadTable() {
    const data = await this.api.get("/backups", this.query);
    for (const b of data.backups) this.known.set(b.id, b);
    this.pages = Math.max(1, data.pagination.pages);
    if (this.query.page > this.pages && data.pagination.total > 0) {
      this.query.page = this.pages; // the last page emptied (deletions): show the new last one
      return this.loadTable();
    }
    this.render(data.backups);
    const { page, total } = data.pagination;
    const pager = $("#backups-pager");
    pager.querySelector('[data-part="label"]').textContent =
      `Page ${page} of ${this.pages} · ${total} backup${total === 1 ? "" : "s"}`;
    pager.querySelector('[data-page="prev"]').disabled = page <= 1;
    pager.querySelector('[data-page="next"]').disabled = page >= this.pages;
    return undefined;
  }

  async loadChart() {
    const data = await this.api.get("/backups", { limit: 100 });
    for (const b of data.backups) if (!this.known.has(b.id)) this.known.set(b.id, b);
    const done = data.backups
      .filter((b) => SUCCEEDED.has(b.status) && b.completedAt && b.duration !== null && b.checksum)
      .reverse();
    const points = (value) => done.map((b) => ({ t: new Date(b.startedAt), v: value(b), label: dateTime(b.startedAt) }));
    drawChart($("#chart-size"), points((b) => b.size), { title: "Size", format: bytes, kind: "size", nice: niceBytes });
    drawChart($("#chart-duration"), points((b) => b.duration), { title: "Duration", format: duration, kind: "duration" });
  }

  render(backups) {
    const focused = document.activeElement?.closest?.("#backups-body button[data-action]");
    const keepFocus = focused ? { action: focused.dataset.action, id: focused.dataset.id } : null;
    const body = clear($("#backups-body"));
    const withActions = allows(this.ctx.role(), "operator");
    body.append(...backups.map((b) => this.row(b, withActions)));
    $("#backups-empty").hidden = backups.length > 0;
    if (keepFocus) {
      const again = body.querySelector(`button[data-action="${keepFocus.action}"][data-id="${keepFocus.id}"]`);
      (again || $("#backups-title")).focus?.();
    }
  }

  row(b, withActions) {
    const running = RUNNING.has(b.status);
    const format = [b.format, b.compression && b.compression !== "none" ? b.compression : null, b.encryption]
      .filter(Boolean).join(" · ");
    const cells = [
      cell("th", "Started", { scope: "row" }, dateTime(b.startedAt), h("span", { class: "sub mono" }, shortId(b.id))),
      cell("td", "Status", {},
        h("span", { class: `badge ${b.status}` }, b.status.replace("_", " ")),
        b.keep ? [" ", h("span", { class: "badge kept" }, "KEPT")] : null,
        b.status === "FAILED" && b.errorMessage
          ? h("span", { class: "sub", title: b.errorMessage }, truncate(b.errorMessage, 140)) : null),
      cell("td", "Type", {}, b.type),
      cell("td", "Kind", {}, b.metadata?.kind || "—", format ? h("span", { class: "sub" }, format) : null),
      cell("td", "Size", { class: "num", "data-part": "size" },
        running ? `${bytes(b.bytesWritten)} so far` : bytes(b.size)),
      cell("td", "Duration", { class: "num" }, running ? "running" : duration(b.duration)),
      cell("td", "Expires", {}, b.keep ? "never (kept)" : dateTime(b.expiresAt)),
      cell("td", "Last verification", {}, verification(b)),
    ];
    if (withActions) cells.push(cell("td", "Actions", {}, this.actionButtons(b)));
    return h("tr", { dataset: { backupId: b.id, status: b.status } }, cells);
  }

  actionButtons(b) {
    const role = this.ctx.role();
    const what = describeBackup(b);
    const button = (action, text, cls = "secondary") =>
      h("button", { type: "button", class: `small ${cls}`, dataset: { action, id: b.id }, "aria-label": `${text} ${what}` }, text);
    const buttons = [];
    if (b.status === "COMPLETED") {
      if (allows(role, "operator")) buttons.push(button("verify", "Verify"));
      if (allows(role, "admin")) buttons.push(button("restore", "Restore"));
      if (allows(role, "operator")) buttons.push(button("keep", b.keep ? "Unkeep" : "Keep"));
    }
    if (allows(role, "admin") && ["COMPLETED", "FAILED", "EXPIRED"].includes(b.status)) {
      buttons.push(button("delete", "Delete", "danger"));
    }
    return h("div", { class: "actions" }, buttons);
  }

  /** Move the bytes of running backups shown in the table without redrawing it. */
  updateProgress(summary) {
    for (const b of summary.runningBackups) {
      const size = $(`#backups-body tr[data-backup-id="${b.id}"] [data-part="size"]`);
      if (size) size.firstChild.textContent = `${bytes(b.bytesWritten)} so far`;
    }
  }
}

function verification(b) {
  if (!b.lastVerifiedAt) return h("span", { class: "badge none" }, "NEVER");
  return [
    h("span", { class: `badge ${b.lastVerifyOk ? "valid" : "invalid"}` }, b.lastVerifyOk ? "VALID" : "INVALID"),
    ` ${b.lastVerifyLevel || ""}`,
    h("span", { class: "sub" }, dateTime(b.lastVerifiedAt)),
  ];
}

function truncate(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
